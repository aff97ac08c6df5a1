"""``vilab expgauss`` end to end: the table, the files, and x <= 0 refused before any work."""

from __future__ import annotations

import json

import pytest

from vilab.cli import main

FAST = ["--steps", "200", "--particles", "32", "--quiet"]


def test_cli_writes_contour_and_summary(tmp_path, capsys):
    out, extra = tmp_path / "out", tmp_path / "copy.json"
    assert main(["expgauss", "--x", "1.5", "--out", str(out), "--json", str(extra), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["elbo_contour.png", "summary.json"]
    summary = json.loads(extra.read_text())
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["closed_form"]["theta"] == pytest.approx(2 / 1.5)
    assert set(summary["svi"]) == {"trace", "meanfield", "stl"}
    for scores in [summary["closed_form"], summary["maximum_likelihood"], *summary["svi"].values()]:
        assert scores["gap"] > 0  # log p(x) - ELBO = KL > 0
    printed = capsys.readouterr().out
    assert "closed form" in printed and "SVI trace" in printed and "max. likelihood" in printed


def test_cli_runs_one_estimator(tmp_path):
    main(["expgauss", "--estimator", "meanfield", "--out", str(tmp_path), *FAST])
    assert list(json.loads((tmp_path / "summary.json").read_text())["svi"]) == ["meanfield"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--x", "-1"], "only for x > 0"),
        (["--x", "nan"], "--x must be finite"),
        (["--init-phi", "0"], "--init-phi must be a finite number > 0"),
        (["--steps", "0"], "--steps must be an integer >= 1"),
    ],
)
def test_cli_rejects_bad_flags_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["expgauss", *FAST, *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
