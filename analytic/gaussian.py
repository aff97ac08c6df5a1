r"""Closed-form Kullback-Leibler divergences used by the VAE loss.

KL of a diagonal Gaussian from the standard normal (Kingma & Welling 2014, "Auto-Encoding
Variational Bayes", Appendix B)::

    KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_d (sigma_d^2 + mu_d^2 - 1 - log sigma_d^2)

and the factorised identity for independent products (the chain rule of KL divergence; Cover &
Thomas 2006, Theorem 2.5.3)::

    KL(prod_i q_i || prod_i p_i) = sum_i KL(q_i || p_i).

Pure torch; never imports Pyro.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Distribution, kl_divergence

__all__ = ["factorised_kl", "kl_diag_normal_std_normal"]


def kl_diag_normal_std_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, diag scale^2) || N(0, I)), summed over the last dimension.

    Args:
        loc: (..., D) means. scale: (..., D) standard deviations, > 0.

    Returns:
        (...,) KL in nats (>= 0; 0 iff loc = 0 and scale = 1).

    Raises:
        ValueError: if shapes differ or a scale is not positive.
    """
    if loc.shape != scale.shape:
        raise ValueError(
            f"loc and scale must have the same shape, got {tuple(loc.shape)} "
            f"and {tuple(scale.shape)}"
        )
    if not bool((scale > 0).all()):
        raise ValueError(f"scale must be > 0, got min {scale.min().item()!r}")
    variance = scale.square()
    return 0.5 * (variance + loc.square() - 1.0 - torch.log(variance)).sum(-1)


def factorised_kl(qs: Sequence[Distribution], ps: Sequence[Distribution]) -> torch.Tensor:
    """sum_i KL(q_i || p_i) for independent factors, each by ``torch.distributions``' closed form.

    Args:
        qs, ps: equally long sequences of distributions, pairwise of the same event shape;
            each KL is summed over its own batch dimensions.

    Returns:
        0-dim tensor, KL(prod q_i || prod p_i) in nats.
    """
    if len(qs) != len(ps) or not qs:
        raise ValueError(
            f"qs and ps must be equally long and non-empty, got {len(qs)} and {len(ps)}"
        )
    return sum(kl_divergence(q, p).sum() for q, p in zip(qs, ps))
