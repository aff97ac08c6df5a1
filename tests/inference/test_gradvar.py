"""Gradient moments: the running mean/variance equal a direct computation; the run trace."""

from __future__ import annotations

import pyro
import pytest
import torch

from analytic import conjugate
from guides.conjugate import GaussianGuide
from inference.estimators import get_elbo
from inference.svi import gradient_moments, variance_along_run
from ppl_models.conjugate import model, simulate

PRIOR = torch.tensor([[1.0, 0.0], [0.8, 0.6]])


def _setup():
    x, _ = simulate(PRIOR, 0.5, 10, seed=0)
    guide = GaussianGuide(torch.tensor([0.5, -0.5]), 0.5 * torch.eye(2))
    return (x, PRIOR, 0.5), guide


def test_moments_equal_mean_and_variance_of_explicit_draws():
    """Welford's running moments equal torch.mean / torch.var of the same 50 draws (1e-10)."""
    args, guide = _setup()
    moments = gradient_moments(model, guide, get_elbo("trace"), *args, num_draws=50, seed=4)
    pyro.set_rng_seed(4)
    loss_fn = get_elbo("trace")(model, guide)
    draws = []
    for _ in range(50):
        grads = torch.autograd.grad(loss_fn(*args), [guide.loc])
        draws.append(-grads[0])
    draws = torch.stack(draws)
    torch.testing.assert_close(moments.mean["guide.loc"], draws.mean(0), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(moments.variance["guide.loc"], draws.var(0), rtol=1e-10, atol=1e-12)
    assert moments.total_variance() >= moments.total_variance("guide.loc")
    assert set(moments.parameter_snr()) == {"guide.loc", "guide.log_diag", "guide.strict_lower"}


def test_moments_leave_parameters_and_grads_untouched():
    args, guide = _setup()
    before = [p.detach().clone() for p in guide.parameters()]
    gradient_moments(model, guide, get_elbo("stl"), *args, num_draws=5)
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters()))
    assert all(p.grad is None for p in guide.parameters())


def test_variance_along_run_measures_at_start_every_k_and_end():
    args, guide = _setup()
    estimators = {"trace": get_elbo("trace"), "stl": get_elbo("stl")}
    run = variance_along_run(
        model, guide, get_elbo("stl"), estimators, *args, num_steps=25, every=10, num_draws=5
    )
    assert run.steps == [0, 10, 20, 25]
    assert all(len(v) == 4 for v in run.total_variance.values())
    assert run.fit.num_steps == 25


def test_stl_variance_falls_towards_zero_along_a_run_to_the_posterior():
    """STL-driven run at constant lr from near the posterior: STL's variance at the end is
    below 1e-3 of its start, Trace_ELBO's stays above 1 (Roeder et al.'s picture)."""
    args, _ = _setup()
    loc, tril = conjugate.posterior(*args)
    guide = GaussianGuide(loc + 0.3, tril * 1.5)
    estimators = {"trace": get_elbo("trace"), "stl": get_elbo("stl")}
    run = variance_along_run(model, guide, get_elbo("stl"), estimators, *args,
                             num_steps=600, every=300, num_draws=20, lr=0.05)  # fmt: skip
    assert run.total_variance["stl"][-1] < 1e-3 * run.total_variance["stl"][0]
    assert run.total_variance["trace"][-1] > 1


def test_bad_settings_are_rejected():
    args, guide = _setup()
    with pytest.raises(ValueError, match="num_draws must be an integer >= 2"):
        gradient_moments(model, guide, get_elbo("trace"), *args, num_draws=1)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        variance_along_run(model, guide, get_elbo("trace"), {}, *args, num_steps=2, every=0)
