r"""Closed-form CAVI for the Bayesian ring mixture: Dirichlet weights, Normal means, unit noise.

Model (K components in 2-D, unit covariance known; the ring of :mod:`analytic.ring` is the
data this is fitted to)::

    pi        ~ Dirichlet(c0 1_K)
    mu_k      ~ N_2(nu, rho^{-1} I)                k = 1..K
    z_n | pi  ~ Cat(pi)                            n = 1..N
    x_n | z_n ~ N_2(mu_{z_n}, I)

Mean field ``q = Dir(pi | c) prod_k N_2(mu_k | m_k, p_k^{-1} I) prod_n Cat(z_n | r_n)``. The
updates follow from ``log q*(block) = E_{q(-block)} log p + const`` (Bishop 2006, PRML §10.2.1,
eqs. 10.46-10.49 and 10.57-10.61 with the covariance known and equal to I, so the Gaussian-
Wishart factor reduces to a Gaussian), with E log pi_k = psi(c_k) - psi(sum_j c_j)::

    log r_nk = E log pi_k - log 2pi - 1/2 (|x_n - m_k|^2 + 2 / p_k) + const_n
    c_k      = c0 + N_k,        N_k = sum_n r_nk
    p_k      = rho + N_k,       m_k = (rho nu + sum_n r_nk x_n) / p_k

(2 / p_k is E|mu_k - m_k|^2 in 2-D). ELBO, all constants kept (loss = -ELBO)::

    E log p(pi)      = log Gamma(K c0) - K log Gamma(c0) + (c0 - 1) sum_k E log pi_k
    E log p(z | pi)  = sum_k N_k E log pi_k
    E log p(mu)      = sum_k [log(rho / 2pi) - rho/2 (|m_k - nu|^2 + 2 / p_k)]
    E log p(x | z,mu)= sum_nk r_nk [-log 2pi - 1/2 (|x_n - m_k|^2 + 2 / p_k)]
    H[q(pi)]         = sum_k log Gamma(c_k) - log Gamma(c.) + (c. - K) psi(c.)
                       - sum_k (c_k - 1) psi(c_k)                (c. = sum_k c_k)
    H[q(mu)]         = sum_k (1 + log 2pi - log p_k)
    H[q(z)]          = -sum_nk r_nk log r_nk

One sweep updates q(z), then q(pi), then q(mu) (q(pi) and q(mu) depend on r alone, so their
order does not matter). The tests check the ELBO against Monte Carlo with torch.distributions,
each update against autograd (the ELBO's gradient in that block is zero there), and
:func:`inference.cavi.auto_cavi` against this module sweep by sweep. Pure torch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from analytic._validate import number, points, positive

__all__ = ["BayesRingPrior", "RingMeanField", "cavi_step", "elbo", "update_assignments"]

_LOG_2PI = math.log(2.0 * math.pi)


class BayesRingPrior(NamedTuple):
    """Prior of the Bayesian ring mixture: ``concentration`` c0 > 0 of the symmetric Dirichlet,
    ``loc`` nu (2 numbers) and ``precision`` rho > 0 of every mean's Normal prior."""

    concentration: float
    loc: tuple[float, float]
    precision: float


class RingMeanField(NamedTuple):
    """q's parameters: ``probs`` r (N, K); ``concentration`` c (K,) of q(pi); ``loc`` m
    (K, 2) and ``precision`` p (K,) of q(mu_k) = N(m_k, p_k^{-1} I)."""

    probs: torch.Tensor
    concentration: torch.Tensor
    loc: torch.Tensor
    precision: torch.Tensor


def _check(X, prior: BayesRingPrior) -> tuple[torch.Tensor, torch.Tensor]:
    X = points("X", X, width=2)
    if not isinstance(prior, BayesRingPrior):
        raise ValueError(f"prior must be a BayesRingPrior, got {type(prior).__name__}")
    positive("prior.concentration", prior.concentration)
    positive("prior.precision", prior.precision)
    loc = [number("prior.loc", v, "2 finite numbers") for v in prior.loc]
    if len(loc) != 2 or not all(math.isfinite(v) for v in loc):
        raise ValueError(f"prior.loc must be 2 finite numbers, got {prior.loc!r}")
    return X, torch.tensor(loc, dtype=X.dtype, device=X.device)


def _e_log_pi(c: torch.Tensor) -> torch.Tensor:
    return torch.digamma(c) - torch.digamma(c.sum())


def _expected_sq(X, loc, precision) -> torch.Tensor:
    """(N, K): E |x_n - mu_k|^2 = |x_n - m_k|^2 + 2 / p_k."""
    return torch.cdist(X, loc).square() + 2.0 / precision


def update_assignments(X, q: RingMeanField, prior: BayesRingPrior) -> torch.Tensor:
    """q(z) update (module docstring): r_nk = softmax_k of E log pi_k - 1/2 E|x_n - mu_k|^2."""
    X, _ = _check(X, prior)
    logits = _e_log_pi(q.concentration) - 0.5 * _expected_sq(X, q.loc, q.precision)
    return torch.softmax(logits, dim=-1)


def cavi_step(X, q: RingMeanField, prior: BayesRingPrior) -> tuple[RingMeanField, torch.Tensor]:
    """One sweep from q (its probs are replaced first): returns (new q, its ELBO)."""
    X, nu = _check(X, prior)
    probs = update_assignments(X, q, prior)
    counts = probs.sum(0)
    precision = prior.precision + counts
    loc = (prior.precision * nu + probs.T @ X) / precision.unsqueeze(-1)
    new = RingMeanField(probs, prior.concentration + counts, loc, precision)
    return new, elbo(X, new, prior)


def elbo(X, q: RingMeanField, prior: BayesRingPrior) -> torch.Tensor:
    """The exact ELBO at any q (module docstring), a 0-dim tensor (loss = -ELBO)."""
    X, nu = _check(X, prior)
    r, c, m, p = q
    K = c.shape[0]
    c0, rho = prior.concentration, prior.precision
    e_log_pi = _e_log_pi(c)
    counts = r.sum(0)
    log_p_pi = math.lgamma(K * c0) - K * math.lgamma(c0) + (c0 - 1.0) * e_log_pi.sum()
    log_p_z = (counts * e_log_pi).sum()
    log_p_mu = (math.log(rho) - _LOG_2PI - 0.5 * rho * ((m - nu).square().sum(-1) + 2.0 / p)).sum()
    log_p_x = (r * (-_LOG_2PI - 0.5 * _expected_sq(X, m, p))).sum()
    total = c.sum()
    entropy_pi = (
        torch.lgamma(c).sum() - torch.lgamma(total) + (total - K) * torch.digamma(total)
        - ((c - 1.0) * torch.digamma(c)).sum()
    )  # fmt: skip
    entropy_mu = (1.0 + _LOG_2PI - torch.log(p)).sum()
    entropy_z = -torch.xlogy(r, r).sum()
    return log_p_pi + log_p_z + log_p_mu + log_p_x + entropy_pi + entropy_mu + entropy_z
