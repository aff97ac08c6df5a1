"""vilab ring --method auto-cavi: the Bayesian ring mixture by hand CAVI and auto-CAVI."""

import json

import pytest

from vilab.cli import main


def test_ring_auto_cavi_agrees_with_the_hand_cavi(tmp_path, capsys):
    out = tmp_path / "out"
    main(["ring", "--method", "auto-cavi", "--radius", "8", "--error-radii", "8",
          "--num-components", "4", "--num-samples", "200", "--num-init", "2",
          "--out", str(out)])  # fmt: skip
    assert "auto-CAVI vs hand CAVI from one start" in capsys.readouterr().out
    bayes = json.loads((out / "summary.json").read_text())["em"]["8"]["bayes"]
    assert bayes["elbo_relative_difference"] < 1e-12
    assert bayes["max_relative_parameter_difference"] < 1e-10
    assert bayes["max_mean_error"] < 0.5  # 50 points per component, unit noise: se ~ 0.14


def test_ring_auto_cavi_is_refused_with_the_density_study(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["ring", "--method", "auto-cavi", "--density", "--out", str(tmp_path)])
    assert "--density runs the density study instead" in capsys.readouterr().err
