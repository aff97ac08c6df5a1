"""Every flag of every ``vilab`` command is run at least once, and its effect is checked.

Each case below runs a command on small settings with one flag (or a group that only makes sense
together) and asserts what the flag must change: a value in ``summary.json`` computed from the
flag by an independent formula, a file, a shape in the checkpoint, the progress bar on stderr,
or the value that reaches the engine (a spy on the library call, where the engine's own tests
check what the value does there). ``test_every_flag_is_exercised`` compares the table with the
parsers, so a new flag without a case fails the suite; the few flags whose effect needs a long
run (NUTS, resuming) are checked in the named tests, which must mention them.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

import inference.jit.inductor
import vilab.earthquake.run as earthquake_run
import vilab.earthquake.streamed as earthquake_streamed
import vilab.expgauss.run as expgauss_run
import vilab.gradvar.run as gradvar_run
import vilab.ring.density as ring_density
import vilab.ring.run as ring_run
import vilab.vae.run as vae_run
import vilab.vae.train as vae_train
from analytic.earthquake import Hyperparameters, initial_mean_field
from analytic.expgauss import joint_optimum, log_evidence
from inference.data import simulate_parquet
from ppl_models.earthquake import simulate
from tests.idx_files import mnist_mirror, write_mnist_dir
from vilab.cli import build_parser, main
from vilab.vae.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "earthquake": ["--num-events", "60", "--k", "2", "--steps", "5", "--num-init", "1"],
    "expgauss": ["--steps", "20"],
    "vae": [
        "--epochs",
        "1",
        "--latent-dim",
        "2",
        "--hidden-dim",
        "8",
        "--batch-size",
        "20",
        "--iwae-samples",
        "3",
    ],  # fmt: skip
    "gradvar": ["--model", "conjugate", "--draws", "10", "--steps", "20", "--every", "10"],
    "reparam": ["--num-samples", "1000"],
    "ring": [
        "--radius",
        "6",
        "--num-components",
        "4",
        "--num-samples",
        "200",
        "--num-init",
        "2",
        "--error-radii",
        "6",
    ],  # fmt: skip
}
QUIET = {"earthquake", "expgauss", "vae", "gradvar", "ring"}  # the commands with a progress bar
NO_DEVICE = {"ring"}  # CPU-only: no --device

# Flags whose effect is checked in a longer test elsewhere: (command, flag) -> test.
ELSEWHERE = {
    **{
        (command, flag): "tests/vilab/test_diagnostics.py::test_" + test
        for command, test in (
            ("earthquake", "earthquake_diagnostics_write_netcdf_csv_forest"),
            ("expgauss", "expgauss_diagnostics_include_the_exact_posterior_mean"),
        )
        for flag in (
            "--diagnostics",
            "--psis-samples",
            "--nuts-samples",
            "--nuts-warmup",
            "--nuts-chains",
        )  # fmt: skip
    },
    **{
        (
            "vae",
            flag,
        ): "tests/vilab/test_diagnostics.py::test_vae_diagnostics_run_psis_per_test_image"
        for flag in ("--diagnostics", "--psis-samples", "--psis-images")
    },
    (
        "vae",
        "--resume",
    ): "tests/vilab/vae/test_run.py::test_cli_resume_continues_to_the_same_result",
    ("earthquake", "--method"): "tests/vilab/earthquake/test_auto_cavi_cli.py::"
    "test_auto_cavi_agrees_with_the_hand_cavi",
    ("ring", "--method"): "tests/vilab/ring/test_auto_cavi.py::"
    "test_ring_auto_cavi_agrees_with_the_hand_cavi",
    ("earthquake", "--timeout"): "tests/inference/test_distributed.py::"
    "test_a_frozen_rank_stops_the_run_within_the_timeout_with_one_line",
}


@dataclass
class Result:
    summary: dict
    out: Path
    stdout: str
    stderr: str
    calls: dict = field(default_factory=dict)


class Cli:
    """Runs ``vilab COMMAND`` with the command's small base flags plus the case's own (later
    flags win), into a fresh folder; records the calls of the functions given to ``spy``."""

    def __init__(self, tmp_path: Path, monkeypatch, capsys):
        self.tmp, self.monkeypatch, self.capsys = tmp_path, monkeypatch, capsys
        self.calls: dict[str, list] = {}
        self._runs = 0
        self._mnist: Path | None = None

    @property
    def mnist(self) -> Path:
        if self._mnist is None:
            self._mnist = write_mnist_dir(self.tmp / "mnist", num_train=40, num_test=10)
        return self._mnist

    def spy(self, module, name: str) -> list:
        """Record ``(args, kwargs)`` of every call of ``module.name`` (still called through)."""
        original, calls = getattr(module, name), self.calls.setdefault(name, [])

        def recorded(*args, **kwargs):
            calls.append((args, kwargs))
            return original(*args, **kwargs)

        self.monkeypatch.setattr(module, name, recorded)
        return calls

    def argv(self, command: str, *flags: str, quiet: bool = True) -> list[str]:
        base = list(BASE[command])
        if command in ("vae",) or (command == "gradvar" and "vae" in flags):
            base += ["--data-dir", str(self.mnist)]
        self._runs += 1
        out = self.tmp / f"run{self._runs}"
        quiet = quiet and command in QUIET
        return [command, *base, "--out", str(out), *(["--quiet"] if quiet else []), *flags]

    def run(self, command: str, *flags: str, quiet: bool = True) -> Result:
        argv = self.argv(command, *flags, quiet=quiet)
        self.capsys.readouterr()
        assert main(argv) == 0
        printed = self.capsys.readouterr()
        out = Path(argv[argv.index("--out") + 1])
        summary = json.loads((out / "summary.json").read_text())
        return Result(summary, out, printed.out, printed.err, self.calls)

    def fails(self, command: str, *flags: str) -> str:
        """The one-line error of a run that must be refused (exit 2)."""
        return self.fails_argv(self.argv(command, *flags))

    def fails_argv(self, argv: list[str]) -> str:
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        return self.capsys.readouterr().err


CASES: dict[tuple[str, tuple[str, ...]], object] = {}


def case(command: str, *flags: str):
    """Register ``check(cli)`` as the case of ``flags`` of ``command``."""

    def register(check):
        CASES[(command, flags)] = check
        return check

    return register


# --------------------------------------------------------------------------------------------
# Catalogs for `vilab earthquake --data`
# --------------------------------------------------------------------------------------------

HP = Hyperparameters(2, tau=0.05, rho=1e-3)


def _write_catalog(path: Path, rows: list[str], header="Latitude,Longitude,Magnitude") -> str:
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def _simulated_rows(seed=0, n=60, magnitude=None) -> list[str]:
    X, S, *_ = simulate(HP, n, seed=seed)
    return [
        f"{lat:.4f},{lon:.4f},{s if magnitude is None else magnitude:.2f}"
        for (lon, lat), s in zip(X.tolist(), S.tolist())
    ]


def _rates_given_constant_strength(summary, s, alpha, beta) -> list[float]:
    """E[lambda_k] = (alpha + sum_n r_nk S_n) / (beta + N_k) with every S_n = s and
    N_k = N * (mean responsibility of k): the Gamma update of the rates, by hand."""
    n = summary["n"]
    return [(alpha + s * n * w) / (beta + n * w) for w in summary["cavi"]["weights"]]


# --------------------------------------------------------------------------------------------
# vilab earthquake
# --------------------------------------------------------------------------------------------


@case("earthquake", "--data")
def _(cli):
    data = _write_catalog(cli.tmp / "c.csv", _simulated_rows())
    r = cli.run("earthquake", "--data", data)
    assert r.summary["source"]["data"] == data and r.summary["n"] == 60
    assert "truth" not in r.summary


@case("earthquake", "--chunk-size")
def _(cli):
    # a Parquet catalog of 60 events, read whole or 7 events at a time: with fewer events than
    # the seeding sample, the streamed run seeds from every event, so it is the same run
    data = str(cli.tmp / "s.parquet")
    simulate_parquet(data, HP, 60, seed=2)
    whole = cli.run("earthquake", "--data", data, "--steps", "0").summary
    r = cli.run("earthquake", "--data", data, "--steps", "0", "--chunk-size", "7")
    assert r.summary["source"]["chunk_size"] == 7 and "streamed in chunks of 7" in r.stdout
    assert r.summary["cavi"]["iterations"] == whole["cavi"]["iterations"]
    assert r.summary["cavi"]["elbo"] == pytest.approx(whole["cavi"]["elbo"], rel=1e-10, abs=0)
    assert r.summary["cavi"]["weights"] == pytest.approx(whole["cavi"]["weights"], rel=1e-9)
    # SVI beside streamed CAVI: q of the globals, Z summed out in the model (so not 'trace')
    svi = cli.run("earthquake", "--data", data, "--chunk-size", "7").summary["svi"]
    assert svi["guide"].startswith("globals") and svi["iterations"] == 5
    assert "--estimator enum or stl" in cli.fails(
        "earthquake", "--data", data, "--chunk-size", "7", "--estimator", "trace"
    )
    assert "give --data FILE.parquet" in cli.fails("earthquake", "--chunk-size", "7")


@case("earthquake", "--num-events")
def _(cli):
    r = cli.run("earthquake", "--num-events", "73")
    assert r.summary["n"] == 73 and len(r.summary["truth"]["means"]) == 2


@case("earthquake", "--lat-col", "--lon-col", "--mag-col")
def _(cli):
    # the default names hold a decoy catalog (another seed); the named columns the real one
    real, decoy = _simulated_rows(seed=0), _simulated_rows(seed=1)
    rows = [f"{d},{r_}" for d, r_ in zip(decoy, real)]
    both = _write_catalog(cli.tmp / "both.csv", rows, "Latitude,Longitude,Magnitude,y,x,m")
    alone = _write_catalog(cli.tmp / "alone.csv", real)
    named = cli.run("earthquake", "--data", both, "--lat-col", "y", "--lon-col", "x",
                    "--mag-col", "m").summary  # fmt: skip
    assert named["cavi"] == {**cli.run("earthquake", "--data", alone).summary["cavi"],
                             "seconds": named["cavi"]["seconds"]}  # fmt: skip
    # each decoy column differs, so ignoring any one flag changes the fit
    for column in range(3):
        assert {row.split(",")[column] for row in real} != {row.split(",")[column] for row in decoy}


@case("earthquake", "--strength-scale")
def _(cli):
    data = _write_catalog(cli.tmp / "c.csv", _simulated_rows(magnitude=5.44))
    r = cli.run("earthquake", "--data", data, "--strength-scale", "10").summary
    expected = _rates_given_constant_strength(r, 54, alpha=1.0, beta=0.1)  # round(10 * 5.44)
    assert r["cavi"]["rates"] == pytest.approx(expected, rel=1e-12)


@case("earthquake", "--bbox")
def _(cli):
    rows = _simulated_rows()
    inside = sum(-30 <= float(r.split(",")[0]) <= 30 and 0 <= float(r.split(",")[1]) <= 180
                 for r in rows)  # fmt: skip
    assert 5 < inside < 55  # the box cuts the catalog
    data = _write_catalog(cli.tmp / "c.csv", rows)
    r = cli.run("earthquake", "--data", data, "--bbox", "-30,30,0,180").summary
    assert r["n"] == inside and r["source"]["outside_bbox"] == 60 - inside


@case("earthquake", "--drop-invalid")
def _(cli):
    data = _write_catalog(cli.tmp / "c.csv", [*_simulated_rows(), "95.0,10.0,6.1", "x,10.0,6.1"])
    assert "--drop-invalid" in cli.fails("earthquake", "--data", data)
    r = cli.run("earthquake", "--data", data, "--drop-invalid").summary
    assert r["n"] == 60 and r["source"]["invalid_dropped"] == 2


@case("earthquake", "--k")
def _(cli):
    r = cli.run("earthquake", "--k", "3").summary
    assert r["k"] == 3 and len(r["cavi"]["means"]) == 3 and len(r["svi"]["rates"]) == 3


@case("earthquake", "--tau", "--rho")
def _(cli):
    # Var[mu_k] = 1 / (rho + tau N_k) per coordinate: the Gaussian update of the centres
    r = cli.run("earthquake", "--tau", "0.02", "--rho", "0.5").summary
    n, c = r["n"], r["cavi"]
    expected = [(0.5 + 0.02 * n * w) ** -0.5 for w in c["weights"]]
    assert c["mean_sd"] == pytest.approx(expected, rel=1e-12)
    assert r["hyperparameters"]["tau"] == 0.02 and r["hyperparameters"]["rho"] == 0.5


@case("earthquake", "--nu")
def _(cli):
    # a prior precision 1e6 times the data's pins every centre at nu
    r = cli.run("earthquake", "--nu", "30,-40", "--rho", "1e4").summary
    for mean in r["cavi"]["means"]:
        assert mean == pytest.approx([30, -40], abs=0.1)


@case("earthquake", "--alpha", "--beta")
def _(cli):
    data = _write_catalog(cli.tmp / "c.csv", _simulated_rows(magnitude=6.2))
    r = cli.run("earthquake", "--data", data, "--alpha", "3.5", "--beta", "2.5").summary
    expected = _rates_given_constant_strength(r, 6, alpha=3.5, beta=2.5)
    assert r["cavi"]["rates"] == pytest.approx(expected, rel=1e-12)


@case("earthquake", "--mixing")
def _(cli):
    base = cli.run("earthquake").summary
    r = cli.run("earthquake", "--mixing", "3,1").summary
    assert r["hyperparameters"]["mixing"] == [0.75, 0.25]
    # E log p(Z) = sum_k N_k log pi_k: the larger weight draws events to its cluster
    assert max(r["cavi"]["weights"]) > max(base["cavi"]["weights"]) + 1e-3


@case("earthquake", "--cavi", "--batch-size", "--passes", "--tau0", "--kappa", "--eval-every")
def _(cli):
    # 1.5 passes over 60 events in batches of 20: ceil(1.5 * 60 / 20) = 5 steps, and the exact
    # ELBO after 0.5, 1.0 and 1.5 passes
    stochastic = ["--steps", "0", "--cavi", "stochastic"]
    c = cli.run("earthquake", *stochastic, "--batch-size", "20", "--passes", "1.5",
                "--eval-every", "0.5").summary["cavi"]  # fmt: skip
    assert c["method"] == "stochastic" and c["iterations"] == 5 and c["evaluations"] == 3
    # one full-batch step with rho_1 = (1 + tau0)^-kappa = 1 is one exact CAVI sweep from the
    # same seeding; tau0 = 1 (rho_1 = 1/2^kappa) stops short of it, and by an amount kappa sets
    exact = cli.run("earthquake", "--steps", "0", "--max-iter", "1", "--tol", "0").summary
    one_step = [*stochastic, "--batch-size", "60", "--passes", "1"]
    full = cli.run("earthquake", *one_step, "--tau0", "0", "--kappa", "1").summary["cavi"]
    means = lambda fit: np.array(fit["means"])  # noqa: E731
    np.testing.assert_allclose(means(full), means(exact["cavi"]), rtol=1e-9)
    half = cli.run("earthquake", *one_step, "--tau0", "1", "--kappa", "1").summary["cavi"]
    other = cli.run("earthquake", *one_step, "--tau0", "1", "--kappa", "0.6").summary["cavi"]
    assert not np.allclose(means(half), means(full), rtol=1e-3)
    assert not np.allclose(means(other), means(half), rtol=1e-3)
    assert "--kappa must be in (0.5, 1]" in cli.fails("earthquake", *stochastic, "--kappa", "0.5")
    assert "--tau0" in cli.fails("earthquake", *stochastic, "--tau0", "-1")


@case("earthquake", "--max-iter")
def _(cli):
    c = cli.run("earthquake", "--max-iter", "1", "--tol", "0").summary["cavi"]
    assert c["iterations"] == 1 and not c["converged"]


@case("earthquake", "--tol")
def _(cli):
    loose = cli.run("earthquake", "--tol", "0.1", "--k", "3").summary["cavi"]
    tight = cli.run("earthquake", "--tol", "0", "--k", "3").summary["cavi"]
    assert loose["converged"] and loose["iterations"] < tight["iterations"]


@case("earthquake", "--num-init")
def _(cli):
    calls = cli.spy(earthquake_run, "cavi")
    cli.run("earthquake", "--num-init", "4")
    assert calls[0][1]["num_init"] == 4


@case("earthquake", "--steps")
def _(cli):
    assert cli.run("earthquake", "--steps", "7").summary["svi"]["iterations"] == 7
    r = cli.run("earthquake", "--steps", "0")  # CAVI alone
    assert r.summary["svi"] is None and "SVI" not in r.stdout and r.summary["cavi"]["elbo"] < 0


@case("earthquake", "--estimator")
def _(cli):
    base = cli.run("earthquake").summary["svi"]
    for name in ("stl", "trace"):
        r = cli.run("earthquake", "--estimator", name)
        assert r.summary["svi"]["estimator"] == name and f"SVI ({name})" in r.stdout
        assert r.summary["svi"]["means"] != base["means"]


@case("earthquake", "--no-jit")
def _(cli):
    """Compiled (default) and eager: the same fit to rounding (the same draws at the same
    seed), a compile time only when compiled, and each calls get_elbo with its jit."""
    calls = cli.spy(earthquake_streamed, "get_elbo")
    compiled = cli.run("earthquake").summary["svi"]  # the default at 60 x 2 cells: compiled
    eager = cli.run("earthquake", "--no-jit").summary["svi"]
    assert [c[1]["jit"] for c in calls] == ["torchscript", False]
    # the default: compiled up to JIT_MAX_CELLS events x clusters per step (measured faster
    # there); --jit and --no-jit override it, and --jit-backend implies --jit

    def rule(num_events, jit=None, subsample_size=None, k=10, jit_backend=None, steps=1000):
        args = argparse.Namespace(jit=jit, subsample_size=subsample_size, k=k, steps=steps,
                                  jit_backend=jit_backend)  # fmt: skip
        return earthquake_run._use_jit(args, num_events)

    assert rule(1_000, k=3) == "torchscript" and rule(100_000, steps=100) is False
    # from WHOLE_STEP_MIN_STEPS steps on, the whole step (it pays for a cold compile there)
    assert rule(1_000, k=3, steps=4_999) == "torchscript"
    assert rule(1_000, k=3, steps=5_000) == "step" and rule(1_000, k=3, steps=5_000, jit=True)
    # above JIT_MAX_CELLS, uncompiled below LARGE_STEP_MIN_STEPS, the whole step from there
    assert rule(100_000, steps=499) is False and rule(100_000, steps=500) == "step"
    assert rule(100_000, subsample_size=1_000) == "torchscript"
    assert rule(100_000, jit=True, steps=100) == "torchscript" and rule(10, jit=False, k=3) is False
    assert rule(100_000, jit_backend="inductor") == "inductor"
    assert (compiled["jit"], eager["jit"]) == (True, False)
    assert (compiled["jit_backend"], eager["jit_backend"]) == ("torchscript", None)
    assert compiled["compile_seconds"] > 0 and eager["compile_seconds"] == 0
    assert compiled["elbo"] == pytest.approx(eager["elbo"], rel=1e-9)


def _start(seed=0):
    X, S, *_ = simulate(Hyperparameters(2, tau=0.01, rho=1e-3), 60, seed=seed)
    return initial_mean_field(X, S, Hyperparameters(2), torch.Generator().manual_seed(seed))


def _sorted_means(means) -> torch.Tensor:
    means = torch.as_tensor(means, dtype=torch.float64)
    return means[means[:, 0].argsort()]


@case("earthquake", "--lr")
def _(cli):
    # a learning rate of 1e-12 leaves SVI at its k-means++ start
    r = cli.run("earthquake", "--lr", "1e-12", "--lr-final", "1e-12").summary
    start = _sorted_means(_start().loc)
    assert torch.allclose(_sorted_means(r["svi"]["means"]), start, atol=1e-6)


@case("earthquake", "--lr-final")
def _(cli):
    # lr decays geometrically from 1e-12 to --lr-final 0.5 over 5 steps: only the last step
    # moves, by about one Adam step, 0.5 in the stored m / loc_scale, i.e. 0.5 tau^-1/2 = 5 deg
    r = cli.run("earthquake", "--lr", "1e-12", "--lr-final", "0.5").summary
    moved = (_sorted_means(r["svi"]["means"]) - _sorted_means(_start().loc)).abs()
    assert 2.5 < moved.max() < 6


@case("earthquake", "--particles")
def _(cli):
    calls = cli.spy(earthquake_streamed, "get_elbo")
    cli.run("earthquake", "--particles", "4")
    assert calls[0][1]["num_particles"] == 4 and calls[0][1]["vectorize_particles"]


@case("earthquake", "--subsample-size")
def _(cli):
    calls = cli.spy(earthquake_run, "fit_svi")
    cli.run("earthquake", "--subsample-size", "20")
    assert calls[0][1]["subsample_size"] == 20
    assert "exceeds the 60 events" in cli.fails("earthquake", "--subsample-size", "61")


# --------------------------------------------------------------------------------------------
# vilab expgauss
# --------------------------------------------------------------------------------------------


@case("expgauss", "--x")
def _(cli):
    r = cli.run("expgauss", "--x", "2.5").summary
    x = torch.tensor([2.5], dtype=torch.float64)  # the library's closed forms at x = 2.5
    theta, phi = joint_optimum(x)
    assert (r["closed_form"]["theta"], r["closed_form"]["phi"]) == (theta.item(), phi.item())
    assert r["closed_form"]["log_evidence"] == log_evidence(x, theta).item()
    assert theta.item() != pytest.approx(2.0, rel=0.1)  # not the default x = 1's optimum


@case("expgauss", "--estimator")
def _(cli):
    assert set(cli.run("expgauss").summary["svi"]) == {"trace", "meanfield", "stl"}
    assert set(cli.run("expgauss", "--estimator", "stl", "trace").summary["svi"]) == {
        "stl",
        "trace",
    }


def _stand_in(cli, compiler: str = "compile_loss") -> list:
    """``inference.jit.inductor.<compiler>`` (``compile_loss`` or ``compile_step``) replaced by
    the function it was given (no C++ compile: the engine's tests time and check the real
    one; a step function takes the step in place when called, as the compiled graph does),
    recording its calls: the backend was reached, and its result passed the comparison with
    the eager loss or step."""
    calls = []

    def stand_in(fn, inputs):
        calls.append(len(inputs))
        return fn

    cli.monkeypatch.setattr(inference.jit.inductor, compiler, stand_in)
    return calls


@case("earthquake", "--jit-backend")
def _(cli):
    """The loss goes to the Inductor backend, and the step to the whole-step one (their
    compiles stood in for: the engine's tests compile them for real); each gives the eager fit
    to rounding; with --no-jit it is refused before any work, naming both flags."""
    compiled = _stand_in(cli)
    whole = _stand_in(cli, "compile_step")
    calls = cli.spy(earthquake_streamed, "get_elbo")
    inductor = cli.run("earthquake", "--jit-backend", "inductor").summary["svi"]
    eager = cli.run("earthquake", "--no-jit").summary["svi"]
    step = cli.run("earthquake", "--jit-backend", "step").summary["svi"]
    assert [c[1]["jit"] for c in calls] == ["inductor", False, "step"] and whole
    assert (step["jit"], step["jit_backend"]) == (True, "step")
    assert step["elbo"] == pytest.approx(eager["elbo"], rel=1e-9)
    assert (inductor["jit"], inductor["jit_backend"]) == (True, "inductor")
    assert inductor["compile_seconds"] > 0 and compiled
    assert inductor["elbo"] == pytest.approx(eager["elbo"], rel=1e-6)
    error = cli.fails("earthquake", "--no-jit", "--jit-backend", "inductor")
    assert "--jit-backend inductor compiles the step, but --no-jit was given" in error


@case("expgauss", "--jit-backend")
def _(cli):
    compiled = _stand_in(cli)
    r = cli.run("expgauss", "--estimator", "stl", "--jit-backend", "inductor").summary["svi"]
    assert (r["stl"]["jit"], r["stl"]["jit_backend"]) == (True, "inductor") and compiled
    whole = _stand_in(cli, "compile_step")
    r = cli.run("expgauss", "--estimator", "stl", "--jit-backend", "step").summary["svi"]
    assert (r["stl"]["jit"], r["stl"]["jit_backend"]) == (True, "step") and whole
    error = cli.fails("expgauss", "--no-jit", "--jit-backend", "inductor")
    assert "--jit-backend inductor compiles the step, but --no-jit was given" in error


@case("expgauss", "--no-jit")
def _(cli):
    compiled = cli.run("expgauss", "--estimator", "stl").summary["svi"]["stl"]
    eager = cli.run("expgauss", "--estimator", "stl", "--no-jit").summary["svi"]["stl"]
    assert (compiled["jit"], eager["jit"]) == (True, False)
    assert compiled["compile_seconds"] > 0 and eager["compile_seconds"] == 0
    assert compiled["theta"] == pytest.approx(eager["theta"], rel=1e-9)


@case("expgauss", "--init-theta", "--init-phi", "--lr")
def _(cli):
    # a learning rate of 1e-12 leaves SVI where it starts
    r = cli.run("expgauss", "--init-theta", "0.7", "--init-phi", "3", "--lr", "1e-12",
                "--lr-final", "1e-12").summary  # fmt: skip
    for fit in r["svi"].values():
        assert fit["theta"] == pytest.approx(0.7, rel=1e-9)
        assert fit["phi"] == pytest.approx(3.0, rel=1e-9)


@case("expgauss", "--lr-final")
def _(cli):
    # lr decays from 1e-12 to 0.05 over 5 steps: only the last step moves, by one Adam step of
    # about 0.05 in the unconstrained (log) parameters
    r = cli.run("expgauss", "--steps", "5", "--init-theta", "0.7", "--lr", "1e-12",
                "--lr-final", "0.05").summary  # fmt: skip
    for fit in r["svi"].values():
        assert 0.02 < abs(math.log(fit["theta"] / 0.7)) < 0.08


@case("expgauss", "--steps")
def _(cli):
    assert all(f["steps"] == 7 for f in cli.run("expgauss", "--steps", "7").summary["svi"].values())


@case("expgauss", "--particles")
def _(cli):
    calls = cli.spy(expgauss_run, "fit_expgauss")
    r = cli.run("expgauss", "--particles", "8").summary
    assert [c[1]["num_particles"] for c in calls] == [8, 8, 8]
    assert all(f["particles"] == 8 for f in r["svi"].values())


# --------------------------------------------------------------------------------------------
# vilab vae
# --------------------------------------------------------------------------------------------


def _checkpoint(r: Result, path: Path | None = None) -> dict:
    return load_checkpoint(path or r.out / "checkpoint.pt")


@case("vae", "--data-dir", "--train-size", "--test-size")
def _(cli):
    data = cli.run("vae").summary["data"]
    assert data["source"] == str(cli.mnist) and (data["num_train"], data["num_test"]) == (40, 10)
    data = cli.run("vae", "--train-size", "25", "--test-size", "4").summary["data"]
    assert (data["num_train"], data["num_test"]) == (25, 4)


@case("vae", "--download")
def _(cli):
    """--download fills $VILAB_CACHE through torchvision (from a local mirror here); a run
    without it or --data-dir then reads the cache, and with an empty cache asks for it."""
    cli.monkeypatch.setenv("VILAB_CACHE", str(cli.tmp / "cache"))
    base = cli.argv("vae")
    del base[base.index("--data-dir") : base.index("--data-dir") + 2]
    with mnist_mirror(cli.mnist, cli.monkeypatch) as (_, seen):
        assert main([*base, "--download"]) == 0
    assert seen
    out = Path(base[base.index("--out") + 1])
    source = json.loads((out / "summary.json").read_text())["data"]["source"]
    assert source == str(cli.tmp / "cache")
    assert main(base) == 0  # the mirror is gone: the cache alone
    cli.monkeypatch.setenv("VILAB_CACHE", str(cli.tmp / "empty"))
    assert "pass --download to fetch it" in cli.fails_argv(base)


@case("vae", "--binarize")
def _(cli):
    calls = cli.spy(vae_train, "binarize")
    cli.run("vae")
    assert [c[0][1] for c in calls] == ["round", "round"]  # train once, test once
    calls.clear()
    r = cli.run("vae", "--binarize", "sample", "--epochs", "2").summary
    assert [c[0][1] for c in calls] == ["sample"] * 3  # test once, train every epoch
    assert r["config"]["binarize"] == "sample"


@case("vae", "--latent-dim", "--hidden-dim", "--num-hidden")
def _(cli):
    r = cli.run("vae", "--latent-dim", "3", "--hidden-dim", "5", "--num-hidden", "3")
    shapes = [tuple(v.shape) for k, v in _checkpoint(r)["model"].items() if k.endswith("weight")]
    assert shapes == [(5, 3), (5, 5), (5, 5), (784, 5)]  # z (3) -> 3 hidden of 5 -> 784 pixels


@case("vae", "--estimator")
def _(cli):
    calls = cli.spy(vae_train, "get_elbo")
    for name in ("trace", "meanfield", "stl"):
        assert cli.run("vae", "--estimator", name).summary["config"]["estimator"] == name
    assert [c[0][0] for c in calls] == ["trace", "meanfield", "stl"]


@case("vae", "--no-jit")
def _(cli):
    calls = cli.spy(vae_train, "get_elbo")
    compiled, eager = cli.run("vae").summary, cli.run("vae", "--no-jit").summary
    assert [c[1]["jit"] for c in calls] == ["torchscript", False]
    assert (compiled["jit"], eager["jit"]) == (True, False)
    for a, b in zip(compiled["history"], eager["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


@case("vae", "--epochs")
def _(cli):
    assert [h["epoch"] for h in cli.run("vae", "--epochs", "3").summary["history"]] == [1, 2, 3]


@case("vae", "--batch-size", "--lr")
def _(cli):
    # Adam's state counts the steps: ceil(40 / 15) = 3 per epoch; the learning rate is stored
    optimizer = _checkpoint(cli.run("vae", "--batch-size", "15", "--lr", "0.003"))["optimizer"]
    assert {s["step"].item() for s in optimizer["state"].values()} == {3}
    assert {g["lr"] for g in optimizer["param_groups"]} == {0.003}


@case("vae", "--particles")
def _(cli):
    calls = cli.spy(vae_train, "get_elbo")
    cli.run("vae", "--particles", "3")
    assert calls[0][1]["num_particles"] == 3 and calls[0][1]["vectorize_particles"]


@case("vae", "--iwae-samples")
def _(cli):
    calls = cli.spy(vae_run, "importance_weighted_bound")
    r = cli.run("vae", "--iwae-samples", "7")
    assert calls[0][0][3] == 7 and r.summary["final"]["iwae_samples"] == 7
    assert "IWAE k=7" in r.stdout


@case("vae", "--checkpoint")
def _(cli):
    path = cli.tmp / "elsewhere" / "vae.pt"
    r = cli.run("vae", "--checkpoint", str(path))
    assert len(_checkpoint(r, path)["history"]) == 1 and not (r.out / "checkpoint.pt").exists()


# --------------------------------------------------------------------------------------------
# vilab gradvar
# --------------------------------------------------------------------------------------------


@case("gradvar", "--model")
def _(cli):
    for model, estimators in (("expgauss", {"trace", "meanfield", "stl"}),
                              ("earthquake", {"trace", "enum", "stl"})):  # fmt: skip
        r = cli.run("gradvar", "--model", model, "--draws", "4", "--steps", "4", "--every", "2")
        assert r.summary["model"] == model
        assert set(r.summary["fixed_points"]["start"]) == estimators


@case("gradvar", "--estimator", "--train-estimator")
def _(cli):
    r = cli.run("gradvar", "--estimator", "trace", "--train-estimator", "trace").summary
    assert set(r["fixed_points"]["start"]) == {"trace"}
    assert r["along_run"]["train_estimator"] == "trace"
    assert set(r["along_run"]["total_variance"]) == {"trace"}


@case("gradvar", "--draws", "--particles")
def _(cli):
    calls = cli.spy(gradvar_run, "gradient_moments")
    r = cli.run("gradvar", "--draws", "6", "--particles", "3").summary
    assert {c[1]["num_draws"] for c in calls} == {6}
    assert {c[0][2].num_particles for c in calls} == {3}
    assert (r["draws"], r["particles"]) == (6, 3)


@case("vae", "--jit-backend")
def _(cli):
    compiled = _stand_in(cli)
    calls = cli.spy(vae_train, "get_elbo")
    r = cli.run("vae", "--jit-backend", "inductor").summary
    assert [c[1]["jit"] for c in calls] == ["inductor"] and compiled
    assert (r["jit"], r["jit_backend"]) == (True, "inductor")


@case("gradvar", "--jit-backend")
def _(cli):
    """--jit-backend implies --jit where the default is --no-jit."""
    compiled = _stand_in(cli)
    flags = ("--model", "expgauss", "--draws", "4", "--steps", "4", "--every", "2")
    r = cli.run("gradvar", *flags, "--jit-backend", "inductor").summary
    assert (r["jit"], r["jit_backend"]) == (True, "inductor") and compiled


@case("gradvar", "--no-jit")
def _(cli):
    """The compiled estimators give the same gradient draws at the same seed."""
    flags = ("--model", "expgauss", "--draws", "4", "--steps", "4", "--every", "2")
    eager = cli.run("gradvar", *flags).summary
    compiled = cli.run("gradvar", *flags, "--jit").summary
    assert (eager["jit"], compiled["jit"]) == (False, True)
    a, b = eager["fixed_points"]["start"], compiled["fixed_points"]["start"]
    assert json.dumps(a) != "{}" and a.keys() == b.keys()
    for name in a:
        assert b[name]["total_variance"] == pytest.approx(a[name]["total_variance"], rel=1e-6)


@case("gradvar", "--steps", "--every")
def _(cli):
    r = cli.run("gradvar", "--steps", "12", "--every", "4").summary["along_run"]
    assert r["num_steps"] == 12 and r["steps"] == [0, 4, 8, 12]


@case("gradvar", "--lr", "--lr-final")
def _(cli):
    calls = cli.spy(gradvar_run, "variance_along_run")
    cli.run("gradvar", "--lr", "0.02", "--lr-final", "0.001")
    assert (calls[0][1]["lr"], calls[0][1]["lr_final"]) == (0.02, 0.001)


@case("gradvar", "--data-dir", "--download", "--batch-size", "--latent-dim", "--hidden-dim",
      "--train-steps")  # fmt: skip
def _(cli):
    calls = cli.spy(gradvar_run, "build_case")
    images = cli.spy(gradvar_run, "_vae_images")
    small = ["--model", "vae", "--batch-size", "8", "--latent-dim", "3", "--hidden-dim", "16",
             "--train-steps", "6", "--draws", "4", "--steps", "4", "--every", "2"]  # fmt: skip
    r = cli.run("gradvar", *small, "--data-dir", str(cli.mnist)).summary
    assert r["model"] == "vae"
    options = calls[0][1]
    assert (options["latent_dim"], options["hidden_dim"], options["train_steps"]) == (3, 16, 6)
    assert images[0][0][0].data_dir == str(cli.mnist) and images[0][0][0].batch_size == 8
    cli.monkeypatch.setenv("VILAB_CACHE", str(cli.tmp / "cache"))
    argv = cli.argv("gradvar", *small, "--download")
    del argv[argv.index("--data-dir") : argv.index("--data-dir") + 2]
    with mnist_mirror(cli.mnist, cli.monkeypatch) as (_, seen):
        assert main(argv) == 0
    assert seen and images[-1][0][0].download


# --------------------------------------------------------------------------------------------
# vilab reparam
# --------------------------------------------------------------------------------------------


@case("reparam", "--num-samples")
def _(cli):
    # the pathwise gradient's standard error falls as 1/sqrt(n): a quarter of it at 16x n
    small = cli.run("reparam", "--num-samples", "1000").summary["exponential"]
    large = cli.run("reparam", "--num-samples", "16000").summary["exponential"]
    assert large["pathwise_grad_se"] / small["pathwise_grad_se"] == pytest.approx(0.25, rel=0.15)


@case("reparam", "--rate")
def _(cli):
    e = cli.run("reparam", "--rate", "0.7").summary["exponential"]
    # d/drate E[z] = d/drate (1/rate) = -1/rate^2
    assert e["rate"] == 0.7 and e["pathwise_grad_exact"] == pytest.approx(-1 / 0.49, rel=1e-12)
    assert abs(e["pathwise_grad_mean"] - e["pathwise_grad_exact"]) < 4 * e["pathwise_grad_se"]


@case("reparam", "--probs", "--temperatures")
def _(cli):
    r = cli.run("reparam", "--probs", "0.25,0.75", "--temperatures", "0.5", "2").summary
    assert r["categorical"]["probs"] == [0.25, 0.75]
    assert [g["temperature"] for g in r["gumbel_softmax"]] == [0.5, 2.0]


# --------------------------------------------------------------------------------------------
# vilab ring
# --------------------------------------------------------------------------------------------


@case("ring", "--radius", "--num-components")
def _(cli):
    r = cli.run("ring", "--radius", "7", "2.5", "--num-components", "5").summary
    assert set(r["em"]) == {"7", "2.5"} and r["num_components"] == 5
    for key, radius in (("7", 7.0), ("2.5", 2.5)):
        truth = torch.tensor(r["em"][key]["true_means"])
        assert truth.shape == (5, 2)
        torch.testing.assert_close(truth.norm(dim=-1), torch.full((5,), radius))
    assert r["limits"]["radius"] == 7.0  # the ELBO curves are drawn at the first radius


@case("ring", "--num-samples")
def _(cli):
    # the log-likelihood is a sum over the points: about twice as large for twice the points
    small = cli.run("ring").summary["em"]["6"]["true_log_likelihood"]
    large = cli.run("ring", "--num-samples", "400").summary["em"]["6"]["true_log_likelihood"]
    assert 1.7 < large / small < 2.3


@case("ring", "--num-init")
def _(cli):
    calls = cli.spy(ring_run.ring, "em")
    cli.run("ring", "--num-init", "3")
    assert {c[1]["num_init"] for c in calls} == {3}


@case("ring", "--error-radii")
def _(cli):
    r = cli.run("ring", "--error-radii", "0.5", "8").summary["em_error_vs_radius"]
    assert r["radii"] == [0.5, 8.0] and len(r["max_mean_error"]) == 2
    assert r["max_mean_error"][0] > r["max_mean_error"][1]  # overlapping components are harder


# the density study on small settings: later flags of a case win
DENSITY = ["--density", "--num-validation", "60", "--num-test", "50", "--ebm-steps", "6",
           "--ebm-batch-size", "32", "--ebm-draws", "64", "--ebm-hidden", "8",
           "--ebm-eval-draws", "512", "--quadrature-points", "101",
           "--bandwidth-grid", "0.2", "2", "4"]  # fmt: skip


def _density(cli, *flags):
    return cli.run("ring", *DENSITY, *flags).summary["density"]["6"]


@case("ring", "--density")
def _(cli):
    result = cli.run("ring", *DENSITY)
    assert set(result.summary) >= {"density", "ebm", "num_test"} and "em" not in result.summary
    d = result.summary["density"]["6"]
    assert set(d["test_log_likelihood"]) == {"truth", "em", "kde", "kde_scott", "ebm"}
    for name in ("density_bandwidth.png", "density_maps.png", "ebm_training.png"):
        assert (result.out / name).stat().st_size > 0
    assert not (result.out / "kl.png").exists()


@case("ring", "--num-validation", "--bandwidth-grid")
def _(cli):
    calls = cli.spy(ring_density.kde, "select_bandwidth")
    d = _density(cli, "--num-validation", "70", "--bandwidth-grid", "0.3", "1.8", "6")
    (_, validation, grid), _ = calls[0]
    assert validation.shape == (70, 2)
    torch.testing.assert_close(grid, torch.linspace(0.3, 1.8, 6, dtype=torch.float64))
    assert d["kde_validation"]["grid"] == pytest.approx([0.3, 0.6, 0.9, 1.2, 1.5, 1.8])
    assert d["kde_bandwidth"] in d["kde_validation"]["grid"]


@case("ring", "--num-test")
def _(cli):
    d = _density(cli, "--num-test", "80")
    # the source's metric is at most -log n_test for any model (Jensen)
    assert d["source_metric_bound"] == pytest.approx(-math.log(80))
    assert all(v <= -math.log(80) + 1e-12 for v in d["source_metric"].values())


@case("ring", "--ebm-steps", "--ebm-lr", "--ebm-schedule")
def _(cli):
    d = _density(cli, "--ebm-steps", "9", "--ebm-lr", "0.02", "--ebm-schedule", "constant")
    assert len(d["ebm_training"]["objective"]) == 9
    assert d["ebm_training"]["lr"] == [0.02] * 9
    cosine = _density(cli, "--ebm-steps", "9", "--ebm-lr", "0.02")["ebm_training"]["lr"]
    assert cosine[0] == 0.02 and cosine[-1] == pytest.approx(
        0.02 * (1 + math.cos(math.pi * 8 / 9)) / 2
    )


@case("ring", "--ebm-batch-size", "--ebm-draws")
def _(cli):
    calls = cli.spy(ring_density.ebm, "train_ebm")
    _density(cli, "--ebm-batch-size", "16", "--ebm-draws", "48")
    assert calls[0][1]["batch_size"] == 16 and calls[0][1]["num_draws"] == 48


@case("ring", "--ebm-hidden", "--ebm-layers")
def _(cli):
    calls = cli.spy(ring_density.ebm, "train_ebm")
    _density(cli, "--ebm-hidden", "5", "--ebm-layers", "3")
    net = calls[0][0][0].net
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [5, 5, 5, 1]


@case("ring", "--ebm-eval-draws", "--quadrature-points")
def _(cli):
    d = _density(cli, "--ebm-eval-draws", "700", "--quadrature-points", "51")
    a = d["ebm_log_normaliser"]
    assert a["importance_draws"] == 700 and a["quadrature_points"] == 51
    assert 1 <= a["importance_ess"] <= 700


# --------------------------------------------------------------------------------------------
# The flags every command shares
# --------------------------------------------------------------------------------------------


def _shared(command: str, flag: str):
    def check(cli):
        SHARED[flag](cli, command)

    CASES[(command, (flag,))] = check


def _out(cli, command):
    r = cli.run(command)
    assert (r.out / "summary.json").is_file() and any(p.suffix == ".png" for p in r.out.iterdir())


def _json(cli, command):
    copy = cli.tmp / "deep" / "copy.json"
    r = cli.run(command, "--json", str(copy))
    assert json.loads(copy.read_text()) == r.summary


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _seed(cli, command):
    # at a fixed thread count: the default count follows the machine's load, and a sum split
    # over another number of threads can differ in the last bit (seen under pytest-xdist:
    # ring's kl_pq_sd_reading 176.6074224575138 against 176.60742245751382)
    a, b, c = (cli.run(command, "--seed", s, "--threads", "1").summary for s in ("3", "3", "4"))
    assert _without_times(a) == _without_times(b) != _without_times(c)


def _device(cli, command):
    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
        cli.run(command, "--device", "cuda")
    else:
        assert "CUDA is not available" in cli.fails(command, "--device", "cuda")
    cli.run(command, "--device", "cpu")


def _threads(cli, command):
    calls = cli.spy(torch, "set_num_threads")
    cli.run(command, "--threads", "1")
    assert calls[0][0] == (1,)  # then main restores the caller's setting
    assert calls[-1][0] == (torch.get_num_threads(),)


def _quiet(cli, command):
    assert "it/s" not in cli.run(command).stderr
    assert "it/s" in cli.run(command, quiet=False).stderr


SHARED = {"--out": _out, "--json": _json, "--seed": _seed, "--device": _device,
          "--threads": _threads, "--quiet": _quiet}  # fmt: skip
for _command in BASE:
    for _flag in SHARED:
        if (_flag != "--quiet" or _command in QUIET) and (
            _flag != "--device" or _command not in NO_DEVICE
        ):
            _shared(_command, _flag)


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    return Cli(tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("key", list(CASES), ids=[f"{c} {' '.join(f)}" for c, f in CASES])
def test_flag_has_its_effect(key, cli):
    CASES[key](cli)


def _flags_of(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {max(a.option_strings, key=len) for a in sub._actions if a.dest != "help"}


# Commands with actions of their own (``vilab catalog convert|simulate``): their flags are
# exercised, and the table checked complete, in the named file.
NESTED = {"catalog": "tests/vilab/test_catalog_cli.py", "cache": "tests/vilab/test_cache_cli.py"}


def _commands() -> list[str]:
    parser = build_parser()
    names = next(a for a in parser._actions if a.dest == "command").choices
    return [name for name in names if name not in NESTED]


def test_every_command_has_base_flags():
    assert sorted(BASE) == sorted(_commands())


@pytest.mark.parametrize("command", _commands())
def test_every_flag_is_exercised(command):
    covered = {f for (c, flags) in CASES if c == command for f in flags}
    covered |= {f for (c, f) in ELSEWHERE if c == command}
    assert covered == _flags_of(command)


@pytest.mark.parametrize("key", list(ELSEWHERE), ids=[" ".join(k) for k in ELSEWHERE])
def test_flags_checked_elsewhere_are_in_the_named_test(key):
    """The named test exists and passes the flag (in its body or a module constant it uses)."""
    path, name = ELSEWHERE[key].split("::")
    source = (REPO / path).read_text()
    tree = ast.parse(source)
    test = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    body = ast.get_source_segment(source, test)
    used = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    constants = [ast.get_source_segment(source, n) for n in tree.body if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id in used for t in n.targets)]  # fmt: skip
    assert any(f'"{key[1]}"' in text for text in [body, *constants])
