"""Long checks, deselected by default; run with ``pytest -m slow`` (about 8 minutes).

The full VAE comparison of issue #5 on the real MNIST files: 15 epochs of the source's plain
PyTorch loop and of the Pyro trainer with each estimator, same initial weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import shared_data

pytestmark = pytest.mark.slow


def test_pyro_vae_trains_as_well_as_the_plain_loop():
    """After 15 epochs from the same weights: meanfield (the plain loop's very objective) is
    within 1 nat of the plain loop's test -ELBO (measured: +0.63; one-sample test -ELBO
    estimates and Adam's path differ run to run by a few tenths), STL is no worse than the plain
    loop (measured: -0.31), STL beats Trace_ELBO on the IWAE estimate (measured: by 1.67 nats),
    and every IWAE estimate is below (better than) its own -ELBO."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vae.py"
    spec = importlib.util.spec_from_file_location("bench_vae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.build_parser().parse_args(["--data-dir", str(shared_data("mnist")), "--full",
                                             "--quiet"])  # fmt: skip
    results = module.main(args)
    plain = results["plain"]["test_nelbo"]
    assert results["meanfield"]["test_nelbo"] <= plain + 1.0
    assert results["stl"]["test_nelbo"] <= plain + 0.5
    assert results["stl"]["test_nll_iwae"] < results["trace"]["test_nll_iwae"]
    for name in ("plain", "trace", "meanfield", "stl"):
        assert results[name]["test_nll_iwae"] < results[name]["test_nelbo"]
