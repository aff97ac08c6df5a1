"""``log_joint_marginal`` (the target of PSIS and NUTS) against torch.distributions, term by
term, for a batch of (mu, lambda) with two leading batch dimensions: every axis of the
vectorised code must be the right one, whatever the batch shape."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Gamma, Normal, Poisson

from analytic.earthquake import Hyperparameters, log_joint_marginal
from ppl_models.earthquake import simulate

HP = Hyperparameters(3, mixing=(0.2, 0.5, 0.3), tau=0.04, rho=0.01, nu=(1.5, -2.0),
                     alpha=2.5, beta=0.3)  # fmt: skip


def _reference(X, S, mu, lam) -> float:
    """One (mu (K, 2), lam (K,)): log p(X, S, mu, lam) with Z summed out, by torch.distributions."""
    nu = torch.tensor(HP.nu, dtype=torch.float64)
    gamma = Gamma(torch.tensor(HP.alpha), torch.tensor(HP.beta))
    log_prior = Normal(nu, HP.rho**-0.5).log_prob(mu).sum() + gamma.log_prob(lam).sum()
    log_pi = torch.log(torch.tensor(HP.mixing, dtype=torch.float64))
    per_event = (log_pi
                 + Normal(mu, HP.tau**-0.5).log_prob(X[:, None, :]).sum(-1)
                 + Poisson(lam).log_prob(S[:, None]))  # fmt: skip
    return float(log_prior + torch.logsumexp(per_event, -1).sum())


def test_batched_values_equal_torch_distributions_one_by_one():
    X, S, *_ = simulate(HP, 40, seed=2)
    g = torch.Generator().manual_seed(0)
    mu = 10.0 * torch.randn(2, 3, 3, 2, generator=g, dtype=torch.float64)
    lam = 0.5 + 5.0 * torch.rand(2, 3, 3, generator=g, dtype=torch.float64)
    out = log_joint_marginal(X, S, HP, mu, lam)
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            expected = _reference(X, S, mu[i, j], lam[i, j])
            assert float(out[i, j]) == pytest.approx(expected, rel=1e-12)
    # and one (mu, lam) alone gives a 0-dim value
    single = log_joint_marginal(X, S, HP, mu[0, 0], lam[0, 0])
    assert single.shape == () and float(single) == pytest.approx(float(out[0, 0]), rel=1e-14)
