"""``vilab ring --density`` end to end on small settings: files, the promised JSON, the table,
the EBM's two normalisers agreeing, and bad flags refused before work."""

from __future__ import annotations

import json
import math

import pytest

from vilab.cli import main

SMALL = ["--density", "--radius", "10", "--num-samples", "500", "--num-validation", "300",
         "--num-test", "300", "--ebm-steps", "300", "--ebm-eval-draws", "20000",
         "--quadrature-points", "401", "--quiet"]  # fmt: skip


def test_density_study_writes_the_promised_json_and_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ring", *SMALL, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "density_bandwidth.png", "density_maps.png", "ebm_training.png", "summary.json",
    ]  # fmt: skip
    d = json.loads((out / "summary.json").read_text())["density"]["10"]
    ll = d["test_log_likelihood"]
    for name in ("truth", "em", "kde", "ebm"):
        assert set(ll[name]) == {"mean", "se"} and 0 < ll[name]["se"] < 0.2
    # the truth scores about -log K - log(2 pi e) = -5.14 when the components barely overlap
    assert ll["truth"]["mean"] == pytest.approx(-math.log(10) - math.log(2 * math.pi * math.e),
                                                abs=4 * ll["truth"]["se"])  # fmt: skip
    # every model is below the truth in expectation (it is the data's own density): allow 4 se
    for name in ("em", "kde", "ebm"):
        diff = d["difference_to_truth"][name]
        assert diff["mean"] < 4 * diff["se"]
    # the validated bandwidth is a grid point, and beats Scott's (which over-smooths the ring)
    assert d["kde_bandwidth"] in d["kde_validation"]["grid"]
    assert ll["kde"]["mean"] > ll["kde_scott"]["mean"] + 0.3
    a = d["ebm_log_normaliser"]
    assert set(a) >= {"importance", "importance_se", "quadrature"}
    assert abs(a["importance"] - a["quadrature"]) < 4 * a["importance_se"] + 1e-3
    # the source's metric cannot exceed -log n_test, whatever the model
    assert max(d["source_metric"].values()) <= -math.log(300) + 1e-12
    printed = capsys.readouterr().out
    assert "R = 10: 300 test points" in printed and "EBM log A: importance" in printed


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-test", "0"], "--num-test must be >= 1, got 0"),
        (["--ebm-draws", "1"], "--ebm-draws must be >= 2, got 1"),
        (["--quadrature-points", "800"], "--quadrature-points must be odd and >= 3, got 800"),
        (["--bandwidth-grid", "0", "5", "20"], "--bandwidth-grid needs 0 < LO <= HI, got LO=0"),
        (["--bandwidth-grid", "0.1", "5", "2.5"], "--bandwidth-grid NUM must be a whole number"),
        (["--ebm-lr", "nan"], "--ebm-lr must be a finite number > 0, got nan"),
        (["--ebm-schedule", "linear"], "invalid choice: 'linear'"),
    ],
)
def test_bad_density_flags_are_refused_before_work(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["ring", "--density", *flags, "--out", str(out)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()
