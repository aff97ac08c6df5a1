"""Gaussian KLs against torch's closed forms and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Beta, Exponential, Gamma, Independent, Normal

from analytic.gaussian import factorised_kl, kl_diag_normal_std_normal


def _params(seed=0, shape=(5, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.rand(shape, generator=g) + 0.2


def test_diag_kl_equals_torch_kl_divergence():
    """Exact identity in float64 (rtol 1e-12)."""
    loc, scale = _params()
    expected = torch.distributions.kl_divergence(
        Independent(Normal(loc, scale), 1), Independent(Normal(0.0, torch.ones_like(scale)), 1)
    )
    torch.testing.assert_close(
        kl_diag_normal_std_normal(loc, scale), expected, rtol=1e-12, atol=1e-12
    )


def test_diag_kl_equals_monte_carlo():
    """E_q[log q - log p] by 200,000 draws, within 4 standard errors."""
    loc, scale = _params(shape=(4,))
    q, p = Independent(Normal(loc, scale), 1), Independent(Normal(torch.zeros(4), 1.0), 1)
    z = q.sample((200_000,))
    ratio = q.log_prob(z) - p.log_prob(z)
    se = ratio.std().item() / math.sqrt(len(ratio))
    assert abs(ratio.mean().item() - kl_diag_normal_std_normal(loc, scale).item()) < 4 * se


def test_diag_kl_is_zero_only_at_the_standard_normal():
    assert kl_diag_normal_std_normal(torch.zeros(3), torch.ones(3)).item() == 0.0
    assert kl_diag_normal_std_normal(torch.zeros(3), torch.full((3,), 1.1)).item() > 0


def test_factorised_kl_of_mixed_families_equals_monte_carlo():
    """KL of a product of Normal, Gamma, Exponential and Beta factors: the sum of the factor
    KLs equals the Monte Carlo KL of the joint (200,000 draws, 4 standard errors)."""
    qs = [
        Normal(torch.tensor([0.3, -1.0]), torch.tensor([0.8, 1.5])),
        Gamma(3.0, 2.0),
        Exponential(torch.tensor(0.7)),
        Beta(2.0, 5.0),
    ]
    ps = [
        Normal(torch.zeros(2), torch.ones(2)),
        Gamma(2.0, 1.0),
        Exponential(torch.tensor(1.3)),
        Beta(1.0, 1.0),
    ]
    n = 200_000
    ratio = torch.zeros(n)
    for q, p in zip(qs, ps):
        z = q.sample((n,))
        ratio += (q.log_prob(z) - p.log_prob(z)).reshape(n, -1).sum(-1)
    se = ratio.std().item() / math.sqrt(n)
    assert abs(ratio.mean().item() - factorised_kl(qs, ps).item()) < 4 * se


@pytest.mark.parametrize(
    "loc, scale, pattern",
    [
        (torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]), "scale must be > 0"),
        (torch.zeros(3), torch.ones(2), "same shape"),
    ],
)
def test_bad_input_is_rejected(loc, scale, pattern):
    with pytest.raises(ValueError, match=pattern):
        kl_diag_normal_std_normal(loc, scale)
    with pytest.raises(ValueError, match="equally long"):
        factorised_kl([Normal(0.0, 1.0)], [])
