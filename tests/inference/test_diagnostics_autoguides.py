"""The diagnostics on the guides Pyro users use, with default arguments: Pyro's autoguides on a
model we did not write (the eight schools of Rubin 1981, as in Pyro's and Stan's docs). The
posterior group holds exactly the model's latent sites, in the model's constrained space, and
PSIS weighs each draw by the density of the whole guide: an autoguide's auxiliary site (the
draw in unconstrained space) included, which the log-Jacobians of its point masses alone are
not. Before, every autoguide below raised ``KeyError`` on its auxiliary site."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoIAFNormal,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    AutoNormalMessenger,
)

from inference import diagnostics as D

Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)
LATENTS = {"mu", "tau", "theta"}


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def _fitted(guide_class, steps=300):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = guide_class(eight_schools)
    svi = SVI(eight_schools, guide, pyro.optim.Adam({"lr": 0.02}), loss=Trace_ELBO())
    for _ in range(steps):
        svi.step(SIGMA, Y)
    return guide


GUIDES = [AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal, AutoLowRankMultivariateNormal]


@pytest.mark.parametrize("guide_class", GUIDES, ids=lambda g: g.__name__)
def test_inference_data_and_psis_with_default_arguments_on_autoguides(guide_class):
    guide = _fitted(guide_class)
    idata = D.to_inference_data(eight_schools, guide, SIGMA, Y, num_samples=50)
    assert set(idata.posterior.data_vars) == LATENTS
    assert idata.posterior["theta"].shape == (1, 50, 8)
    assert bool((idata.posterior["tau"] > 0).all())  # the model's constrained space
    result = D.psis_check(eight_schools, guide, SIGMA, Y, num_samples=200)
    assert set(result.means) == LATENTS
    assert result.log_weights.shape == (200,) and torch.isfinite(torch.tensor(result.khat))


def test_autonormal_log_weights_equal_an_independent_density():
    """AutoNormal draws u ~ Normal(loc, scale) per site and maps tau = exp(u): q(tau) is a
    LogNormal. log p(x, z) - log q(z) from torch.distributions, site by site, equals the
    weights PSIS uses, to 1e-10, with or without ``sites`` named (naming them used to leave
    the auxiliary site out of log q: the log-Jacobian alone, several nats off)."""
    guide = _fitted(AutoNormal)
    log_w, draws = D.guide_log_weights(eight_schools, guide, SIGMA, Y, num_samples=64)
    loc, scale = guide.locs, guide.scales
    log_q = (
        dist.Normal(loc.mu, scale.mu).log_prob(draws["mu"])
        + dist.LogNormal(loc.tau, scale.tau).log_prob(draws["tau"])
        + dist.Normal(loc.theta, scale.theta).log_prob(draws["theta"]).sum(-1)
    )
    mu, tau, theta = draws["mu"], draws["tau"], draws["theta"]
    log_p = (
        dist.Normal(0.0, 5.0).log_prob(mu)
        + dist.HalfCauchy(5.0).log_prob(tau)
        + dist.Normal(mu[:, None], tau[:, None]).log_prob(theta).sum(-1)
        + dist.Normal(theta, SIGMA).log_prob(Y).sum(-1)
    )
    torch.testing.assert_close(log_w, (log_p - log_q).detach(), rtol=1e-10, atol=1e-10)
    # naming the sites selects the draws, not a part of the guide's density
    pyro.set_rng_seed(0)
    named, _ = D.guide_log_weights(eight_schools, guide, SIGMA, Y, num_samples=64,
                                   sites=["mu", "tau", "theta"])  # fmt: skip
    pyro.set_rng_seed(0)
    default, _ = D.guide_log_weights(eight_schools, guide, SIGMA, Y, num_samples=64)
    torch.testing.assert_close(named, default, rtol=0, atol=0)


def test_a_point_mass_guide_gives_its_point():
    """AutoDelta: every draw is the MAP point; the posterior group holds it under the model's
    names."""
    guide = _fitted(AutoDelta, steps=50)
    idata = D.to_inference_data(eight_schools, guide, SIGMA, Y, num_samples=5)
    assert set(idata.posterior.data_vars) == LATENTS
    assert float(idata.posterior["mu"].std()) == 0.0


def _iaf():
    return _fitted(AutoIAFNormal, steps=100)


def _laplace():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoLaplaceApproximation(eight_schools)
    svi = SVI(eight_schools, guide, pyro.optim.Adam({"lr": 0.02}), loss=Trace_ELBO())
    for _ in range(100):
        svi.step(SIGMA, Y)
    return guide.laplace_approximation(SIGMA, Y)


def _messenger():  # initialised only: Adam at lr 0.02 takes it to NaN on this model in Pyro
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoNormalMessenger(eight_schools)
    guide(SIGMA, Y)
    return guide


@pytest.mark.parametrize(
    "build",
    [_iaf, _laplace, _messenger],
    ids=["AutoIAFNormal", "AutoLaplaceApproximation", "AutoNormalMessenger"],
)
def test_the_other_autoguides_give_exactly_the_models_latents(build):
    """A normalising flow, a Laplace approximation (a pushforward of its own latent) and a
    messenger guide (no auxiliary site: the model's sites drawn in place): the posterior group
    and PSIS's means hold the model's three latents and nothing auxiliary."""
    guide = build()
    idata = D.to_inference_data(eight_schools, guide, SIGMA, Y, num_samples=20)
    assert set(idata.posterior.data_vars) == LATENTS
    assert bool((idata.posterior["tau"] > 0).all())
    result = D.psis_check(eight_schools, guide, SIGMA, Y, num_samples=50)
    assert set(result.means) == LATENTS and result.log_weights.shape == (50,)
