"""vilab earthquake --method auto-cavi: auto-CAVI beside the hand CAVI, and its agreement."""

import json

import pytest

from vilab.cli import main


def test_auto_cavi_agrees_with_the_hand_cavi(tmp_path, capsys):
    out = tmp_path / "out"
    main(["earthquake", "--method", "auto-cavi", "--steps", "0", "--num-events", "400",
          "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "auto-CAVI vs hand CAVI from one start" in printed
    auto = json.loads((out / "summary.json").read_text())["auto_cavi"]
    assert auto["sweeps"] == auto["hand_sweeps"]
    assert auto["elbo_relative_difference"] < 1e-12
    assert auto["max_relative_parameter_difference"] < 1e-10


def test_auto_cavi_refuses_the_stochastic_cavi(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["earthquake", "--method", "auto-cavi", "--cavi", "stochastic", "--steps", "0",
              "--out", str(tmp_path)])  # fmt: skip
    assert "--method auto-cavi is compared with the exact CAVI" in capsys.readouterr().err
