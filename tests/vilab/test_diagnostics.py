"""``--diagnostics`` end to end on small runs: the files, the printed verdict, bad flags."""

from __future__ import annotations

import csv
import json

import pyro.infer
import pytest
import torch

import vilab.earthquake.run as earthquake_run
from inference.diagnostics.common import arviz
from tests.idx_files import write_mnist_dir
from vilab.cli import main

NUTS = ["--diagnostics", "--psis-samples", "200", "--nuts-samples", "60", "--nuts-warmup", "40",
        "--nuts-chains", "1", "--quiet"]  # fmt: skip


def _spy_mcmc(monkeypatch) -> list[dict]:
    """The keyword arguments of every ``MCMC(...)`` the diagnostics build."""
    calls, original = [], pyro.infer.MCMC

    def recorded(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(pyro.infer, "MCMC", recorded)  # imported where NUTS runs
    return calls


def _check_sizes(out, mcmc_calls):
    """The sizes NUTS asked for: --psis-samples draws of q, --nuts-* of NUTS."""
    idata = arviz().from_netcdf(str(out / "posterior.nc"))
    assert dict(idata.posterior.sizes)["draw"] == 200
    assert (idata.nuts_posterior.sizes["chain"], idata.nuts_posterior.sizes["draw"]) == (1, 60)
    assert [(c["num_samples"], c["warmup_steps"]) for c in mcmc_calls] == [(60, 40)]
    return idata


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_earthquake_diagnostics_write_netcdf_csv_forest(tmp_path, capsys, monkeypatch):
    """The files, their sizes, and the cluster labels: SVI's clusters are matched to CAVI's
    for the main table, and the diagnostics used to draw from the guide under its own labels
    (their ``mu[0]`` was the table's k = 2). A matching that swaps the two clusters (forced,
    so the test cannot pass by luck) must reach the diagnostics: the mean of ``mu[k]``'s
    draws is the table's SVI mean k, not the other."""
    out, mcmc = tmp_path / "out", _spy_mcmc(monkeypatch)
    monkeypatch.setattr(earthquake_run, "match_clusters", lambda a, b: torch.tensor([1, 0]))
    flags = ["--num-events", "80", "--k", "2", "--steps", "50", "--num-init", "1"]
    assert main(["earthquake", *flags, *NUTS, "--out", str(out)]) == 0
    means = json.loads((out / "summary.json").read_text())["svi"]["means"]
    rows = {r["parameter"]: r for r in _rows(out / "summary.csv")}
    for k in range(2):
        drawn = [float(rows[f"mu[{k}, {c}]"]["vi_mean"]) for c in ("lon", "lat")]
        dist = [sum((a - b) ** 2 for a, b in zip(drawn, m)) for m in means]
        assert min(range(2), key=dist.__getitem__) == k, (k, drawn, means)
    for name in ("posterior.nc", "summary.csv", "forest.png", "elbo_trace.png"):
        assert (out / name).stat().st_size > 0
    idata = _check_sizes(out, mcmc)
    assert {"posterior", "observed_data", "vi_elbo", "nuts_posterior"} <= set(idata.groups())
    assert idata.vi_elbo["elbo"].size == 50 and "psis_khat" in idata.attrs
    rows = _rows(out / "summary.csv")
    assert [r["parameter"] for r in rows][:2] == ["mu[0, lon]", "mu[0, lat]"]
    assert {"sd_ratio", "overlap90", "r_hat", "ess_bulk", "psis_mean"} <= set(rows[0])
    assert "PSIS k-hat =" in capsys.readouterr().out


def test_expgauss_diagnostics_include_the_exact_posterior_mean(tmp_path, capsys, monkeypatch):
    out, mcmc = tmp_path / "out", _spy_mcmc(monkeypatch)
    flags = ["--estimator", "trace", "--steps", "100", "--particles", "16"]
    assert main(["expgauss", *flags, *NUTS, "--out", str(out)]) == 0
    _check_sizes(out, mcmc)
    rows = _rows(out / "summary.csv")
    assert rows[0]["parameter"] == "z[0]" and rows[-1]["parameter"].endswith("exact posterior mean")
    assert (out / "forest.png").exists() and (out / "elbo_trace.png").exists()
    assert "exact posterior mean of z" in capsys.readouterr().out


def test_vae_diagnostics_run_psis_per_test_image(tmp_path, capsys):
    data = write_mnist_dir(tmp_path / "mnist", num_train=40, num_test=12)
    out = tmp_path / "out"
    flags = ["--data-dir", str(data), "--epochs", "1", "--latent-dim", "3", "--hidden-dim", "16",
             "--batch-size", "20", "--iwae-samples", "5", "--quiet", "--diagnostics",
             "--psis-images", "6", "--psis-samples", "50"]  # fmt: skip
    assert main(["vae", *flags, "--out", str(out)]) == 0
    rows = _rows(out / "summary.csv")
    assert len(rows) == 6 and set(rows[0]) == {"image", "khat", "ess"}
    idata = arviz().from_netcdf(str(out / "posterior.nc"))
    assert idata.psis["log_weights"].shape == (6, 50)
    assert (out / "psis_khat.png").exists()
    assert "median k-hat" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("earthquake", ["--nuts-chains", "0"], "--nuts-chains must be an integer >= 1"),
        ("expgauss", ["--psis-samples", "1"], "--psis-samples must be an integer >= 2"),
        ("vae", ["--psis-images", "0"], "--psis-images must be an integer >= 1"),
    ],
)
def test_bad_diagnostics_flags_are_refused_before_work(tmp_path, capsys, command, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--diagnostics", *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_nuts_run_that_fails_its_checks_is_reported_in_one_line(tmp_path):
    """From the command line, NUTS's convergence warning is one line on stderr, naming the
    command, the r-hat or ESS that failed and the parameter; the run still finishes (exit 0)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "vilab", "expgauss", "--steps", "50", "--quiet", "--diagnostics",
         "--nuts-samples", "20", "--nuts-warmup", "20", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vilab expgauss: warning: NUTS may not have converged (")
    assert "< 400 for z[0]" in lines[0] and "Traceback" not in done.stderr
