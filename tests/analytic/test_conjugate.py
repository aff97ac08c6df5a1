"""Closed forms of the conjugate Gaussian model against independent routes."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch.distributions import MultivariateNormal

from analytic import conjugate
from guides.conjugate import GaussianGuide
from ppl_models.conjugate import MAX_PLATE_NESTING, model, simulate

PRIOR = torch.tensor([[1.0, 0.0], [0.8, 0.6]])


def _data():
    x, _ = simulate(PRIOR, 0.5, 7, seed=0)
    return x, PRIOR, 0.5


def test_log_evidence_equals_the_marginal_gaussian_density():
    """x stacked is N(0, 1 1^T (x) Sigma_0 + sigma^2 I): its log-density (rtol 1e-12)."""
    x, prior, sigma = _data()
    N, D = x.shape
    cov = torch.kron(torch.ones(N, N), prior @ prior.T) + sigma**2 * torch.eye(N * D)
    expected = MultivariateNormal(torch.zeros(N * D), cov).log_prob(x.flatten())
    assert conjugate.log_evidence(*_data()).item() == pytest.approx(expected.item(), rel=1e-12)


def test_elbo_equals_pyro_monte_carlo():
    """At a q away from the posterior: Trace_ELBO, 20 batches x 5000 particles, within 4 SE."""
    args = _data()
    loc, tril = torch.tensor([0.2, -0.1]), torch.tensor([[0.4, 0.0], [-0.1, 0.3]])
    loss_fn = pyro.infer.Trace_ELBO(
        num_particles=5000, vectorize_particles=True, max_plate_nesting=MAX_PLATE_NESTING
    )(model, GaussianGuide(loc, tril))
    values = torch.tensor([-loss_fn(*args).item() for _ in range(20)])
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - conjugate.elbo(*args, loc, tril).item()) < 4 * se


def test_posterior_is_the_stationary_maximum_of_the_elbo():
    """Autograd gradient of the closed-form ELBO vanishes at the posterior (atol 1e-10), and
    random perturbations all lower it."""
    args = _data()
    loc, tril = conjugate.posterior(*args)
    loc, tril = loc.clone().requires_grad_(True), tril.clone().requires_grad_(True)
    best = conjugate.elbo(*args, loc, tril)
    for g in torch.autograd.grad(best, (loc, tril)):
        assert g.abs().max().item() < 1e-10
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        d_loc = 0.05 * torch.randn(2, generator=gen)
        d_tril = torch.tril(0.02 * torch.randn(2, 2, generator=gen))
        assert conjugate.elbo(*args, loc + d_loc, tril + d_tril).item() < best.item()


def test_bad_input_is_rejected():
    x, prior, _ = _data()
    with pytest.raises(ValueError, match="obs_scale must be a finite number > 0"):
        conjugate.posterior(x, prior, 0.0)
    with pytest.raises(ValueError, match=r"prior_scale_tril must have shape \(2, 2\)"):
        conjugate.posterior(x, torch.eye(3), 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\)"):
        conjugate.posterior(x[0], prior, 1.0)


@pytest.mark.parametrize("sigma", [0.7, 1.3])
def test_log_evidence_at_a_noise_scale_where_no_term_coincides(sigma):
    """sigma = 0.5 makes 1/sigma^2 equal to 2/sigma (and sigma = 1 makes it equal to 1): here
    neither holds, so the posterior's precision N/sigma^2 is tested as written (rtol 1e-12)."""
    x, _ = simulate(PRIOR, sigma, 5, seed=1)
    N, D = x.shape
    cov = torch.kron(torch.ones(N, N), PRIOR @ PRIOR.T) + sigma**2 * torch.eye(N * D)
    expected = MultivariateNormal(torch.zeros(N * D), cov).log_prob(x.flatten())
    value = conjugate.log_evidence(x, PRIOR, sigma)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


def test_shape_and_diagonal_edges():
    x, prior, sigma = _data()
    loc, _ = conjugate.posterior(x[:1], prior, sigma)  # one observation is enough
    assert loc.shape == (2,)
    with pytest.raises(ValueError) as err:
        conjugate.posterior(x[:0], prior, sigma)
    assert str(err.value) == "x must have shape (N, D) with N >= 1, got (0, 2)"
    singular = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    with pytest.raises(ValueError) as err:
        conjugate.posterior(x, singular, sigma)
    assert str(err.value) == "prior_scale_tril must have a positive diagonal"


@pytest.mark.parametrize(
    "x,tril,pattern",
    [
        (torch.zeros(0, 2), torch.eye(2), r"x must have shape \(N, D\) with N >= 1, got \(0, 2\)"),
        (torch.zeros(3, 2), torch.diag(torch.tensor([1.0, 0.0])),
         "^prior_scale_tril must have a positive diagonal$"),
    ],
)  # fmt: skip
def test_refusals_name_the_argument(x, tril, pattern):
    with pytest.raises(ValueError, match=pattern):
        conjugate.posterior(x.double(), tril.double(), 0.7)


def test_one_observation_is_enough():
    """N = 1 is a valid data set: the posterior precision is Sigma_0^-1 + I / sigma^2."""
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    loc, tril = conjugate.posterior(x, torch.eye(2, dtype=torch.float64), 0.7)
    precision = 1.0 + 1.0 / 0.7**2
    assert torch.allclose(tril @ tril.T, torch.eye(2, dtype=torch.float64) / precision)
    assert torch.allclose(loc, x[0] / 0.7**2 / precision)
