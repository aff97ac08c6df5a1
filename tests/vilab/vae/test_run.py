"""``vilab vae`` end to end on generated MNIST files: table, files, resume, bad flags."""

from __future__ import annotations

import json

import pytest

from tests.idx_files import write_mnist_dir
from vilab.cli import main

TINY = ["--latent-dim", "3", "--hidden-dim", "16", "--batch-size", "20", "--iwae-samples", "5",
        "--quiet"]  # fmt: skip


@pytest.fixture
def data_dir(tmp_path):
    return str(write_mnist_dir(tmp_path / "mnist", num_train=60, num_test=20))


def test_cli_trains_evaluates_and_writes_every_file(tmp_path, data_dir, capsys):
    out, extra = tmp_path / "out", tmp_path / "copy.json"
    flags = ["--data-dir", data_dir, "--epochs", "2", "--out", str(out), "--json", str(extra)]
    assert main(["vae", *flags, *TINY]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "learning_curves.png", "reconstructions.png", "samples.png",
        "summary.json",
    ]  # fmt: skip
    s = json.loads(extra.read_text())
    assert [r["epoch"] for r in s["history"]] == [1, 2]
    assert s["config"]["estimator"] == "meanfield" and not s["data"]["md5_verified"]
    assert s["final"]["test_log_likelihood_iwae"] > -s["final"]["test_nelbo"] - 5  # IWAE >~ ELBO
    printed = capsys.readouterr().out
    assert "test -ELBO" in printed and "IWAE k=5" in printed


def test_cli_resume_continues_to_the_same_result(tmp_path, data_dir):
    common = ["--data-dir", data_dir, "--estimator", "stl", *TINY]
    main(["vae", *common, "--epochs", "2", "--out", str(tmp_path / "a")])
    main(["vae", *common, "--epochs", "1", "--out", str(tmp_path / "b")])
    main(["vae", *common, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"])
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "b"))
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert a["final"]["test_nelbo"] == b["final"]["test_nelbo"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--resume"], "--resume: the checkpoint"),
        (["--data-dir", "/nonexistent"], "is not a folder"),
    ],
)
def test_cli_rejects_bad_flags_before_writing(tmp_path, data_dir, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["vae", "--data-dir", data_dir, *TINY, *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
