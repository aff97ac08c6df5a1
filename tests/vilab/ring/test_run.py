"""``vilab ring`` end to end on small settings: files, the JSON the issue promises, the table."""

from __future__ import annotations

import json

import pytest

from vilab.cli import main

SMALL = ["--num-samples", "300", "--num-init", "2", "--error-radii", "1", "10", "--quiet"]


def test_ring_writes_every_file_and_the_promised_json(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ring", *SMALL, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "elbos.png", "em_error.png", "kl.png", "ring_data.png", "summary.json",
    ]  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    for radius in ("10", "1"):
        em = s["em"][radius]
        assert {"means", "weights", "log_likelihood", "true_log_likelihood",
                "max_mean_error"} <= set(em)  # fmt: skip
        assert em["log_likelihood"] >= em["true_log_likelihood"]  # ML beats the truth
    # separated components are found to ~1/sqrt(N/K) = 0.18; at R = 1 they overlap
    assert s["em"]["10"]["max_mean_error"] < 4 * (300 / 10) ** -0.5
    assert s["em"]["1"]["max_mean_error"] > s["em"]["10"]["max_mean_error"]
    kl = s["kl"]
    assert kl["kl_pq"] == pytest.approx(133.331, rel=1e-5)
    assert kl["kl_qp"] == pytest.approx(3.68944, rel=1e-5)
    assert "variance" in kl["reading"]
    assert (
        s["limits"]["max_L1_vs_limit"] < 1e-12 and s["limits"]["max_log_p_K5000_vs_limit"] < 1e-12
    )
    printed = capsys.readouterr().out
    assert "R = 10: EM log-likelihood" in printed and "the source printed" in printed


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--radius", "-1"], "--radius values must be in [0, 1e+06]"),
        (["--radius", "1e200"], "float64), got 1e+200"),
        (["--num-components", "0"], "--num-components must be an integer >= 1"),
        (["--num-samples", "5"], "--num-samples 5 is fewer than --num-components 10"),
        (["--error-radii", "nan"], "--error-radii values must be in [0, 1e+06]"),
    ],
)
def test_bad_flags_are_refused_before_work(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["ring", *flags, "--out", str(out)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()
