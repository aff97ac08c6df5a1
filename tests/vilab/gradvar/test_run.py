"""``vilab gradvar`` end to end on small settings; bad flags refused before any work."""

from __future__ import annotations

import json

import pytest

from tests.idx_files import write_mnist_dir
from vilab.cli import main

FAST = ["--draws", "10", "--steps", "20", "--every", "10", "--quiet"]


def test_conjugate_run_shows_stl_vanishing_at_the_posterior(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["gradvar", "--model", "conjugate", *FAST, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["gradvar.png", "summary.json"]
    s = json.loads((out / "summary.json").read_text())
    at_optimum = s["fixed_points"]["optimum"]
    assert at_optimum["stl"]["total_variance"] <= 1e-20
    assert at_optimum["trace"]["total_variance"] > 1
    assert s["along_run"]["steps"] == [0, 10, 20]
    assert "variance (q)" in capsys.readouterr().out


def test_vae_run_on_small_generated_mnist(tmp_path):
    data = write_mnist_dir(tmp_path / "mnist", num_train=30, num_test=5)
    out = tmp_path / "out"
    flags = ["--model", "vae", "--data-dir", str(data), "--batch-size", "8", "--latent-dim", "3",
             "--hidden-dim", "16", "--train-steps", "20"]  # fmt: skip
    assert main(["gradvar", *flags, *FAST, "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["fixed_points"]["start"]) == {"trace", "meanfield", "stl"}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "earthquake", "--estimator", "meanfield"], "does not apply to --model"),
        (["--train-estimator", "enum"], "does not apply to --model conjugate"),
        (["--draws", "1"], "--draws must be an integer >= 2"),
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["--model", "vae", "--data-dir", "/nonexistent"], "is not a folder"),
    ],
)
def test_bad_flags_are_refused(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["gradvar", *FAST, *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
