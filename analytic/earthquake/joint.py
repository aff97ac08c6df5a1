r"""The earthquake mixture's joint density with the assignments summed out exactly,
log p(X, S, mu, lambda): the target of importance sampling from q(mu) q(lambda) (PSIS) and the
density NUTS samples."""

from __future__ import annotations

import math

import torch

from analytic.earthquake.params import Hyperparameters
from analytic.earthquake.updates import LOG_2PI

__all__ = ["log_joint_marginal"]


def log_joint_marginal(
    X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, mu: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    r"""log p(X, S, mu, lambda) with every Z_n summed out exactly, for a batch of (mu, lambda).

    ::

        log p = sum_k [log N_2(mu_k | nu, rho^{-1} I) + log Gamma(lambda_k | alpha, beta)]
              + sum_n log sum_k pi_k N_2(x_n | mu_k, tau^{-1} I) Poisson(s_n | lambda_k)

    (the mixture likelihood; the sum over k by log-sum-exp). Used as the target of importance
    sampling from q(mu) q(lambda) (PSIS) and by NUTS, which sees the same density.

    Args:
        X: (N, 2). S: (N,). hp: hyperparameters. mu: (..., K, 2). lam: (..., K), > 0.

    Returns:
        (...) log-densities (nats).
    """
    nu = torch.tensor(hp.nu, dtype=X.dtype, device=X.device)
    log_pi = torch.log(torch.tensor(hp.mixing, dtype=X.dtype, device=X.device))
    log_prior_mu = (-LOG_2PI + math.log(hp.rho) - 0.5 * hp.rho * (mu - nu).square().sum(-1)).sum(-1)
    log_prior_lam = (
        hp.alpha * math.log(hp.beta) - math.lgamma(hp.alpha)
        + (hp.alpha - 1) * torch.log(lam) - hp.beta * lam
    ).sum(-1)  # fmt: skip
    # (..., N, K): |x_n - mu_k|^2 = |x_n|^2 - 2 x_n . mu_k + |mu_k|^2, no (..., N, K, 2) temporary
    sq = (X.square().sum(-1, keepdim=True) - 2 * X @ mu.transpose(-1, -2)
          + mu.square().sum(-1).unsqueeze(-2))  # fmt: skip
    log_lik = (
        log_pi - LOG_2PI + math.log(hp.tau) - 0.5 * hp.tau * sq
        + S.unsqueeze(-1) * torch.log(lam).unsqueeze(-2) - lam.unsqueeze(-2)
        - torch.lgamma(S + 1).unsqueeze(-1)
    )  # fmt: skip
    return log_prior_mu + log_prior_lam + torch.logsumexp(log_lik, -1).sum(-1)
