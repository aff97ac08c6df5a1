"""The Pyro exponential-Gaussian model and its guide: simulation, sites, the analytic KL."""

from __future__ import annotations

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch

from guides.expgauss import ExpGaussGuide
from ppl_models.expgauss import MAX_PLATE_NESTING, ExpGaussModel, simulate


def test_simulate_is_reproducible_with_the_right_moments():
    """Mean of x is 1/theta (sd of the mean ~ sqrt(1/theta^2 + 1)/sqrt(N); 4 SE)."""
    x, z = simulate(0.5, 100_000, seed=0)
    assert torch.equal(x, simulate(0.5, 100_000, seed=0)[0])
    assert bool((z > 0).all())
    se = math.sqrt(1 / 0.5**2 + 1) / math.sqrt(len(x))
    assert abs(x.mean().item() - 2.0) < 4 * se


def test_model_and_guide_sites_have_the_plate_shape():
    x = torch.tensor([0.5, -1.0, 2.0])
    guide = ExpGaussGuide(torch.tensor([1.0, 2.0, 3.0]))
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(ExpGaussModel(0.7), guide_trace)).get_trace(x)
    assert guide_trace.nodes["z"]["value"].shape == (3,)
    assert guide_trace.nodes["z"]["fn"].has_rsample
    assert model_trace.nodes["x"]["is_observed"]
    assert torch.equal(model_trace.nodes["x"]["value"], x)


def test_meanfield_uses_the_closed_form_exponential_kl():
    """TraceMeanField_ELBO's one-particle loss equals -log N(x | z, 1) + KL at the z the guide
    drew, with KL(Expo(phi) || Expo(theta)) = log(phi/theta) + theta/phi - 1 (exact, 1e-12)."""
    x, theta, phi = torch.tensor([0.8]), 0.6, 1.7
    loss_fn = pyro.infer.TraceMeanField_ELBO(max_plate_nesting=MAX_PLATE_NESTING)
    loss_fn = loss_fn(ExpGaussModel(theta), ExpGaussGuide(torch.tensor([phi])))
    pyro.set_rng_seed(5)
    loss = loss_fn(x).item()
    pyro.set_rng_seed(5)
    z = torch.empty(1).exponential_() / phi  # the guide's draw: Expo(1) / phi
    kl = math.log(phi / theta) + theta / phi - 1
    expected = -torch.distributions.Normal(z, 1.0).log_prob(x).item() + kl
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ExpGaussModel(0.0), "theta must be a finite number > 0"),
        (lambda: ExpGaussGuide(torch.tensor([1.0, -1.0])), "phi must be finite and > 0"),
        (lambda: ExpGaussGuide(torch.tensor(1.0)), r"shape \(N,\)"),
        (lambda: simulate(1.0, 0, seed=0), "num_obs must be an integer >= 1"),
    ],
)
def test_bad_construction_is_rejected(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_guide_rejects_data_of_another_size():
    with pytest.raises(ValueError, match="holds 2 rates"):
        ExpGaussGuide(torch.tensor([1.0, 2.0]))(torch.tensor([1.0, 2.0, 3.0]))
