"""``vilab reparam`` end to end: the tests pass at the defaults' sizes, files, bad flags."""

from __future__ import annotations

import json

import pytest

from vilab.cli import main


def test_cli_samplers_pass_their_tests_and_write_files(tmp_path, capsys):
    """At N = 10^5 and a fixed seed every p-value is > 0.01 and the pathwise gradient is within
    4 standard errors of -1/rate^2."""
    out = tmp_path / "out"
    assert main(["reparam", "--temperatures", "0.1", "1", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["reparam.png", "summary.json"]
    s = json.loads((out / "summary.json").read_text())
    e, c = s["exponential"], s["categorical"]
    assert min(e["inverse_cdf_ks"][1], e["torch_ks"][1], e["two_sample_ks"][1]) > 0.01
    assert min(c["gumbel_max_chi2"][1], c["torch_chi2"][1]) > 0.01
    for row in s["gumbel_softmax"]:
        assert min(row["argmax_p"], row["ks_vs_torch_min_p"]) > 0.01
    assert abs(e["pathwise_grad_mean"] - e["pathwise_grad_exact"]) < 4 * e["pathwise_grad_se"]
    assert "Gumbel-max" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--probs", "0.5,0.6"], "--probs must sum to 1"),
        (["--probs", "abc"], "expected numbers"),
        (["--temperatures", "1", "0"], "--temperatures must all be finite and > 0"),
        (["--rate", "-1"], "--rate must be a finite number > 0"),
        (["--num-samples", "1"], "--num-samples must be an integer >= 2"),
    ],
)
def test_cli_rejects_bad_flags_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["reparam", *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
