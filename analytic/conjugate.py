r"""The conjugate Gaussian model: exact posterior and closed-form ELBO of a Gaussian q.

Model (D-dimensional latent, N observations)::

    z ~ N(0, Sigma_0),    x_n | z ~ N(z, sigma^2 I),   n = 1..N

Exact posterior (Bishop 2006, PRML Eqs. 2.113-2.117 with A = I, b = 0)::

    Lambda = Sigma_0^{-1} + (N / sigma^2) I,   Sigma_post = Lambda^{-1},
    m_post = Sigma_post (sum_n x_n) / sigma^2

ELBO of q = N(m, S), S = L L^T (loss = -elbo)::

    E_q log p(x | z) = -N D/2 log(2 pi sigma^2) - (sum_n |x_n - m|^2 + N tr S) / (2 sigma^2)
    E_q log p(z)     = -D/2 log(2 pi) - 1/2 log|Sigma_0| - 1/2 (m^T Sigma_0^{-1} m
                       + tr(Sigma_0^{-1} S))
    H[q]             = D/2 (1 + log 2 pi) + 1/2 log|S|

At q = the exact posterior the ELBO equals log p(x), and log p(x, z) - log q(z) is the same
number for every z: the case where the path-derivative estimator has zero variance.
Pure torch; never imports Pyro.
"""

from __future__ import annotations

import math

import torch

__all__ = ["elbo", "log_evidence", "posterior"]


def _check(x: torch.Tensor, prior_scale_tril: torch.Tensor, obs_scale: float) -> None:
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
    D = x.shape[1]
    if prior_scale_tril.shape != (D, D):
        raise ValueError(
            f"prior_scale_tril must have shape ({D}, {D}), got {tuple(prior_scale_tril.shape)}"
        )
    if not bool((torch.diagonal(prior_scale_tril) > 0).all()):
        raise ValueError("prior_scale_tril must have a positive diagonal")
    if not (math.isfinite(obs_scale) and obs_scale > 0):
        raise ValueError(f"obs_scale must be a finite number > 0, got {obs_scale!r}")


def posterior(
    x: torch.Tensor, prior_scale_tril: torch.Tensor, obs_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior N(loc, L L^T) of z given x.

    Args:
        x: (N, D) observations. prior_scale_tril: (D, D) lower Cholesky factor of Sigma_0.
        obs_scale: sigma > 0.

    Returns:
        (loc (D,), scale_tril (D, D)).
    """
    _check(x, prior_scale_tril, obs_scale)
    N, D = x.shape
    prior_precision = torch.cholesky_inverse(prior_scale_tril)
    precision = prior_precision + (N / obs_scale**2) * torch.eye(D, dtype=x.dtype)
    cov = torch.linalg.inv(precision)
    cov = 0.5 * (cov + cov.T)
    loc = cov @ x.sum(0) / obs_scale**2
    return loc, torch.linalg.cholesky(cov)


def elbo(
    x: torch.Tensor,
    prior_scale_tril: torch.Tensor,
    obs_scale: float,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
) -> torch.Tensor:
    """Closed-form ELBO of q = N(loc, scale_tril scale_tril^T) (module docstring), 0-dim.

    Args:
        x: (N, D). prior_scale_tril: (D, D). obs_scale: sigma > 0.
        loc: (D,) mean of q. scale_tril: (D, D) with a positive diagonal; only its lower
            triangle is read.
    """
    _check(x, prior_scale_tril, obs_scale)
    N, D = x.shape
    scale_tril = torch.tril(scale_tril)
    S = scale_tril @ scale_tril.T
    log_2pi = math.log(2 * math.pi)
    expected_lik = -0.5 * N * D * (log_2pi + 2 * math.log(obs_scale)) - (
        (x - loc).square().sum() + N * torch.trace(S)
    ) / (2 * obs_scale**2)
    prior_precision = torch.cholesky_inverse(prior_scale_tril)
    log_det_prior = 2 * torch.log(torch.diagonal(prior_scale_tril)).sum()
    expected_prior = -0.5 * (
        D * log_2pi + log_det_prior + loc @ prior_precision @ loc + torch.trace(prior_precision @ S)
    )
    entropy = 0.5 * D * (1 + log_2pi) + torch.log(torch.diagonal(scale_tril).abs()).sum()
    return expected_lik + expected_prior + entropy


def log_evidence(x: torch.Tensor, prior_scale_tril: torch.Tensor, obs_scale: float) -> torch.Tensor:
    """log p(x): the ELBO at the exact posterior (where the bound is tight), 0-dim."""
    loc, scale_tril = posterior(x, prior_scale_tril, obs_scale)
    return elbo(x, prior_scale_tril, obs_scale, loc, scale_tril)
