"""The energy-based model: SNIS gradient against the exact gradient of a Gaussian energy,
importance normaliser against quadrature, a training run that improves, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analytic import ring
from inference.density import ebm, snis


class GaussianEnergy(nn.Module):
    """E(x) = -sum_i (x_i - mu_i)^2 / (2 s_i^2), s = exp(log_s): A = sum_i log(sqrt(2 pi) s_i),
    so grad_mu A = 0 and grad_{log s} A = (1, 1) exactly."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor([0.4, -1.1]))
        self.log_s = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x):
        return -(((x - self.mu) / self.log_s.exp()) ** 2).sum(-1) / 2


def test_snis_gradient_of_a_equals_the_exact_gradient_within_4_se():
    """The surrogate's autograd gradient, with the data term removed (an empty-effect batch:
    the gradient of mean_b E is subtracted by hand), is the SNIS estimate sum w~ grad E(x_m):
    equal to the closed-form per-draw gradients' SNIS mean to 1e-12, and within 4 of its
    delta-method standard errors of the exact grad A = (0, 0, 1, 1)."""
    energy = GaussianEnergy()
    q = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), 2.0), 1)
    torch.manual_seed(0)
    draws = q.sample((50_000,))
    batch = torch.tensor([[0.2, 0.5], [1.0, -0.3]])
    loss, _, log_w = ebm.snis_surrogate(energy, batch, draws, q.log_prob(draws))
    loss.backward()
    with torch.no_grad():
        s2 = (2 * energy.log_s).exp()
        # data term of the gradient of -loss: mean_b grad E(x_b)
        data_mu = ((batch - energy.mu) / s2).mean(0)
        data_log_s = ((batch - energy.mu) ** 2 / s2).mean(0)
        grad_a_mu = data_mu + energy.mu.grad  # -loss = data - A-term; loss.grad = -(data - A)
        grad_a_log_s = data_log_s + energy.log_s.grad
        per_draw = torch.cat([(draws - energy.mu) / s2, (draws - energy.mu) ** 2 / s2], dim=1)
    mean, se = snis.snis_mean(log_w, per_draw)
    torch.testing.assert_close(torch.cat([grad_a_mu, grad_a_log_s]), mean, rtol=1e-12, atol=1e-12)
    exact = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert bool(((mean - exact).abs() < 4 * se).all()), (mean, se)
    assert bool((se < 0.02).all())


@pytest.fixture(scope="module")
def ring_fit():
    means = ring.ring_means(6, 5.0)
    X, _ = ring.sample(600, means, seed=0)
    T, _ = ring.sample(400, means, seed=1)
    fit = ring.em(X, 6, num_init=3, seed=0)
    center, spread = X.mean(0), X.var(0).mean().sqrt().item()
    q = ebm.defensive_mixture(fit.means, fit.weights, 1.5, center, 2.0 * spread)
    return X, T, q, center, spread


def _test_score(energy, q, T):
    log_a = ebm.importance_log_normaliser(energy, q, 1 << 15, seed=1)
    with torch.no_grad():
        return (energy(T) - log_a.value).mean().item()


def test_importance_normaliser_agrees_with_quadrature_within_its_error(ring_fit):
    """A(theta) of an untrained and a briefly trained network, by IS (2^17 draws) and by
    Simpson's rule on a box of +-10 spreads (801^2 nodes): within 4 IS standard errors plus
    1e-4 for the quadrature (Simpson error O(h^4) with h ~ 0.1 against widths ~ 1)."""
    X, _, q, center, spread = ring_fit
    torch.manual_seed(0)
    energy = ebm.EnergyMLP(center, spread, hidden=16)
    half = 10 * spread
    box = (center[0].item() - half, center[0].item() + half,
           center[1].item() - half, center[1].item() + half)  # fmt: skip
    for trained in (False, True):
        if trained:
            ebm.train_ebm(energy, X, q, steps=100, lr=1e-2)
        est = ebm.importance_log_normaliser(energy, q, 1 << 17)
        quad = ebm.quadrature_log_normaliser(energy, box, 801)
        assert abs(est.value - quad) < 4 * est.se + 1e-4, (est, quad)
        assert est.se < 0.01


def test_a_short_training_run_improves_the_test_log_likelihood(ring_fit):
    """300 steps from a random network: the test log-likelihood rises by more than 1 nat and
    closes more than half of its gap to the truth's (measured: -6.16 -> -5.14, truth -4.61);
    the logged ESS fraction stays in (0, 1]; the objective at the end beats the start."""
    X, T, q, center, spread = ring_fit
    torch.manual_seed(0)
    energy = ebm.EnergyMLP(center, spread, hidden=32)
    before = _test_score(energy, q, T)
    hist = ebm.train_ebm(energy, X, q, steps=300, lr=1e-2)
    after = _test_score(energy, q, T)
    truth = ring.log_density(T, ring.ring_means(6, 5.0)).mean().item()
    assert after > before + 1.0 and after - before > 0.5 * (truth - before), (before, after, truth)
    assert all(0 < e <= 1 for e in hist.ess_fraction)
    assert sum(hist.objective[-20:]) / 20 > sum(hist.objective[:20]) / 20 + 0.5  # measured 0.67
    assert hist.lr[0] == pytest.approx(1e-2) and hist.lr[-1] < 1e-3  # cosine decay


def test_same_seed_same_training_and_the_global_rng_is_untouched(ring_fit):
    X, _, q, center, spread = ring_fit
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        energy = ebm.EnergyMLP(center, spread, hidden=8)
        state = torch.get_rng_state()
        runs.append(ebm.train_ebm(energy, X, q, steps=20, seed=3, schedule="constant"))
        assert torch.equal(torch.get_rng_state(), state)
    assert runs[0] == runs[1] and runs[0].lr == [3e-3] * 20
    torch.manual_seed(5)
    other = ebm.train_ebm(ebm.EnergyMLP(center, spread, hidden=8), X, q, steps=20, seed=4)
    assert other.objective != runs[0].objective


def test_the_energy_is_integrable_far_away():
    """tanh units bound the MLP, so E -> -|u|^2 / (2 c^2) + O(1): at |u| = 1e3 the Gaussian
    term (-1.25e5 at c = 2) is all that is left, whatever the weights."""
    torch.manual_seed(0)
    energy = ebm.EnergyMLP(torch.zeros(2), 1.0, hidden=8)
    with torch.no_grad():
        for p in energy.parameters():
            p.mul_(10)
        far = energy(torch.tensor([[1e3, 0.0], [0.0, -1e3]]))
    bound = sum(p.abs().sum().item() for p in energy.net[-1].parameters())
    assert bool(((far + 1e6 / 8).abs() <= bound).all())


@pytest.mark.parametrize(
    "call, pattern",
    [(lambda: ebm.EnergyMLP(torch.zeros(2), 0.0), "scale must be a finite number > 0, got 0.0"),
     (lambda: ebm.EnergyMLP(torch.zeros(2), 1.0, hidden=0),
      "hidden must be an integer >= 1, got 0"),
     (lambda: ebm.EnergyMLP(torch.zeros(3), 1.0), r"center must be 2 finite numbers"),
     (lambda: ebm.EnergyMLP(torch.zeros(2), 1.0, base_sd=math.nan), "base_sd must be .*nan"),
     (lambda: ebm.defensive_mixture(torch.zeros(2, 2), torch.ones(2) / 2, 1.0, torch.zeros(2),
                                    1.0, defensive=1.0), r"defensive must be in \(0, 1\), got 1.0"),
     (lambda: ebm.defensive_mixture(torch.zeros(2, 2), torch.ones(2) / 2, -1.0, torch.zeros(2),
                                    1.0), "component_sd must be a finite number > 0, got -1.0")],
)  # fmt: skip
def test_bad_model_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"steps": 0}, "steps must be an integer >= 1, got 0"),
     ({"num_draws": 1}, "num_draws must be >= 2"),
     ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
     ({"schedule": "linear"}, "schedule must be 'cosine' or 'constant', got 'linear'"),
     ({"data": torch.zeros(5, 3)}, r"data must have shape \(N, 2\) with N >= 1, got \(5, 3\)")],
)  # fmt: skip
def test_bad_training_input(ring_fit, kwargs, pattern):
    X, _, q, center, spread = ring_fit
    data = kwargs.pop("data", X)
    with pytest.raises(ValueError, match=pattern):
        ebm.train_ebm(ebm.EnergyMLP(center, spread, hidden=4), data, q, **kwargs)
