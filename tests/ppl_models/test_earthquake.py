"""The Pyro earthquake model: simulation, shapes, subsampling."""

from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch

from analytic.earthquake import Hyperparameters
from ppl_models.earthquake import model, simulate


def test_simulate_is_reproducible_and_leaves_global_rng_alone():
    hp = Hyperparameters(4)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = simulate(hp, 50, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = simulate(hp, 50, seed=7)
    c = simulate(hp, 50, seed=8)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    X, S, Z, mu, lam = a
    assert X.shape == (50, 2) and S.shape == (50,) and Z.shape == (50,)
    assert mu.shape == (4, 2) and lam.shape == (4,)
    assert torch.all(S == S.round()) and torch.all(S >= 0)


def test_simulated_locations_have_precision_tau():
    """Within-cluster residuals X_n - mu_{Z_n} have variance 1/tau per coordinate (not tau:
    the mistake of seeds/000). 20,000 draws give the variance to ~1% (sd sqrt(2/n))."""
    hp = Hyperparameters(2, tau=4.0)
    X, _, Z, mu, _ = simulate(hp, 20_000, seed=0)
    var = (X - mu[Z]).var()
    assert abs(var.item() - 0.25) < 4 * 0.25 * (2 / 40_000) ** 0.5


def test_subsampled_model_scales_the_likelihood():
    hp = Hyperparameters(3)
    X, S, *_ = simulate(hp, 40, seed=0)
    trace = poutine.trace(model).get_trace(X, S, hp, subsample_size=10)
    for name in ("z", "x", "s"):
        assert trace.nodes[name]["scale"] == pytest.approx(4.0)
        assert trace.nodes[name]["fn"].batch_shape == (10,)
    assert trace.nodes["mu"]["scale"] == 1.0
