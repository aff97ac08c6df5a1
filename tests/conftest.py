"""Shared test set-up: float64, fixed seeds, a fresh Pyro param store, validation on; one
torch thread per pytest-xdist worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyro
import pytest
import torch

from analytic.earthquake import Hyperparameters

torch.set_default_dtype(torch.float64)

# pyproject.toml runs the suite on one pytest-xdist worker per core (`-n auto`). Each worker
# and the commands it starts get one thread, as the workers already fill the cores. On this
# 2-core machine the suite took 12:33 in one process of two threads and 4:33 on two workers
# of one thread each (measured the same day).
IN_XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if IN_XDIST_WORKER:
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Inside ``mutmut run`` (which runs pytest in its own forked processes and times each
    test) the tests run in that process: no xdist workers."""
    if "mutmut" in sys.modules:
        config.option.numprocesses = 0


# Real data is optional: VILAB_SHARED_DATA, else ../shared/data beside the checkout.
SHARED_DATA = Path(
    os.environ.get("VILAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
# CI sets VILAB_REQUIRE_DATA=1 where ../shared/data exists: a missing file then fails the test
# instead of skipping it, so that the real-data tests cannot go quiet unnoticed.
REQUIRE_DATA = os.environ.get("VILAB_REQUIRE_DATA") == "1"


def shared_data(relative: str) -> Path:
    """``SHARED_DATA / relative``, or a skip that says what is missing and how to point at it
    (a failure when ``VILAB_REQUIRE_DATA=1``)."""
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"{path} is not present (set VILAB_SHARED_DATA to the shared data folder)"
        if REQUIRE_DATA:
            pytest.fail(f"{reason}; VILAB_REQUIRE_DATA=1 requires it")
        pytest.skip(reason)
    return path


@pytest.fixture(autouse=True)
def _one_thread_in_a_worker():
    """Each test starts a worker at one thread, whatever the test before left: `vilab` picks
    its thread count from torch's current one and the machine's load, so a count left raised
    would make the same run differ in the last bit from one test to the next."""
    if IN_XDIST_WORKER:
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _every_saved_figure_is_readable(monkeypatch):
    """Every figure any test has a command save is checked as drawn (:mod:`tests.figures`):
    the commands' own runs are the test of their figures, at no extra run."""
    import matplotlib.figure

    from tests.figures import problems

    save = matplotlib.figure.Figure.savefig

    def checked(fig, fname, *args, **kwargs):
        saved = save(fig, fname, *args, **kwargs)  # (the draw that lays the figure out)
        found = problems(fig, drawn=True)
        assert not found, f"figure {getattr(fname, 'name', fname)}: " + "; ".join(found)
        return saved

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", checked)


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def recovery_hp() -> Hyperparameters:
    """Well-separated clusters (centres sd 10, events sd 0.82) with rates around 10 and unequal
    weights, so that 2,000 events pin each mean to within ~0.04 (1 / sqrt(tau N_k), N_k >= 400)
    and each rate to ~2%: the recovery tolerances (0.2 and 10%) are then about 5 standard errors.
    No term vanishes: tau, rho != 1, alpha != 1, 2, pi not uniform."""
    return Hyperparameters(3, mixing=(0.2, 0.3, 0.5), tau=1.5, rho=0.01, alpha=5.0, beta=0.5)


@pytest.fixture
def float32_default():
    """torch's own default dtype, float32, for one test: the suite runs in float64, so a
    routine that should compute in float64 whatever it is given, or keep its input's dtype,
    would pass here by accident if it silently used the default dtype instead."""
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(torch.float64)
