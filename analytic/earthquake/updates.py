r"""The three CAVI updates of the earthquake mixture and its exact ELBO, all constants kept.

Every update is ``log q*(block) = E_{q(-block)}[log p(X, S, Z, mu, lambda)] + const`` (Bishop
2006, PRML §10.1.1, eq. 10.9; Blei, Kucukelbir & McAuliffe 2017, eq. 18). The course notes
(KTH DD2434 Assignment 1B, §1.3) reach the same updates; one solution uses tau as a variance,
which is wrong, and both write the 1-D normaliser ``sqrt(tau / 2 pi)`` where the 2-D density has
``tau / (2 pi)``. Expectations under q (Gamma with shape a, rate b; psi = digamma)::

    E[lambda_k] = a_k / b_k,   E[log lambda_k] = psi(a_k) - log b_k,
    E[|x - mu_k|^2] = |x - m_k|^2 + 2 / p_k

Everything the ELBO and the global updates need of the ``(N, K)`` responsibilities r is three
sufficient statistics, one product ``r^T G`` with the ``(N, 4)`` design ``G = [1, x_1, x_2, s]``;
the assignment logits are one product ``G W``. Memory is O(NK). Loss = -ELBO is not used here:
every function returns the ELBO (to maximise).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from analytic.earthquake.params import (
    Hyperparameters,
    MeanField,
    as_data,
    as_mean_field,
    checked_mean_field,
)

__all__ = [
    "LOG_2PI",
    "DataConstants",
    "SufficientStats",
    "assign",
    "assignment_weights",
    "cavi_step",
    "cavi_step_from_design",
    "data_constants",
    "design",
    "elbo",
    "elbo_from_stats",
    "finite_elbo",
    "locations_from_stats",
    "rates_from_stats",
    "stats_from_design",
    "sufficient_stats",
    "update_assignments",
    "update_locations",
    "update_rates",
]


LOG_2PI = math.log(2.0 * math.pi)


class SufficientStats(NamedTuple):
    """Responsibility-weighted statistics, all that the ELBO and global updates need of r.

    Attributes:
        counts: N_k = sum_n r_nk, shape (K,).
        sum_x: sum_n r_nk x_n, shape (K, 2).
        sum_s: sum_n r_nk s_n, shape (K,).
    """

    counts: torch.Tensor
    sum_x: torch.Tensor
    sum_s: torch.Tensor


def finite_elbo(value: torch.Tensor, hp: Hyperparameters) -> torch.Tensor:
    """``value`` (an ELBO) unchanged if finite; else a ValueError naming the hyperparameters,
    which are then too extreme for float64 (the drivers return no -inf or NaN bound)."""
    if not bool(torch.isfinite(value)):
        raise ValueError(
            f"the ELBO is {value.item()}: the data or the hyperparameters are too extreme for "
            f"float64 (tau={hp.tau!r}, rho={hp.rho!r}, alpha={hp.alpha!r}, beta={hp.beta!r})"
        )
    return value


def design(X: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """The ``(N, 4)`` design ``G = [1, x_1, x_2, s]`` in the dtype of X."""
    return torch.cat([torch.ones_like(X[:, :1]), X, S.to(X.dtype).unsqueeze(-1)], dim=-1)


class DataConstants(NamedTuple):
    """Terms of the ELBO that depend on the data alone (sum_k r_nk = 1 removes r)."""

    sum_sq_x: torch.Tensor  # sum_n |x_n|^2
    sum_log_factorial_s: torch.Tensor  # sum_n log(s_n!)


def data_constants(X: torch.Tensor, S: torch.Tensor) -> DataConstants:
    """:class:`DataConstants` of events X (N, 2) and strengths S (N,), in X's dtype."""
    S = S.to(X.dtype)
    return DataConstants(X.pow(2).sum(), torch.lgamma(S + 1).sum())


def stats_from_design(G: torch.Tensor, probs: torch.Tensor) -> SufficientStats:
    """:class:`SufficientStats` as one product ``r^T G`` of the (N, K) responsibilities and
    the (N, 4) design :func:`design`: rows (N_k, sum_n r_nk x_n, sum_n r_nk s_n)."""
    moments = probs.T @ G  # (K, 4): one pass over the (N, K) responsibilities
    return SufficientStats(moments[:, 0], moments[:, 1:3], moments[:, 3])


def sufficient_stats(X: torch.Tensor, S: torch.Tensor, probs: torch.Tensor) -> SufficientStats:
    """``N_k = sum_n r_nk``, ``sum_n r_nk x_n`` and ``sum_n r_nk s_n``.

    Args:
        X: (N, 2); S: (N,); probs: (N, K).

    Returns:
        :class:`SufficientStats` with shapes (K,), (K, 2), (K,).
    """
    X, S = as_data(X, S)
    return stats_from_design(design(X, S), torch.as_tensor(probs).to(X))


def _hp_tensors(hp: Hyperparameters, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kw = {"dtype": like.dtype, "device": like.device}
    return torch.tensor(hp.mixing, **kw), torch.tensor(hp.nu, **kw)


def assignment_weights(hp: Hyperparameters, q: MeanField) -> torch.Tensor:
    r"""``W`` of shape (4, K) such that ``G @ W`` are the unnormalised log q*(Z_n = k).

    log q*(Z_n = k) = log pi_k - tau/2 E|x_n - mu_k|^2 + s_n E[log lambda_k] - E[lambda_k] + c_n
                    = [log pi_k - tau/2 (|m_k|^2 + 2/p_k) - a_k/b_k]        (row of the "1")
                      + x_n . (tau m_k)                                       (rows of x_1, x_2)
                      + s_n (psi(a_k) - log b_k)                              (row of s)
                      + c_n,

    where c_n collects -tau/2 |x_n|^2, log(tau / 2 pi) and -log(s_n!), which cancel in the
    normalisation (PRML eq. 10.46-10.49 with a Poisson term added; Assignment 1B §1.3.2).
    """
    mixing, _ = _hp_tensors(hp, q.loc)
    expected_rate = q.concentration / q.rate
    expected_log_rate = torch.digamma(q.concentration) - torch.log(q.rate)
    expected_sq_loc = q.loc.pow(2).sum(-1) + 2.0 / q.precision
    bias = torch.log(mixing) - 0.5 * hp.tau * expected_sq_loc - expected_rate
    return torch.cat([bias.unsqueeze(0), hp.tau * q.loc.T, expected_log_rate.unsqueeze(0)], dim=0)


def assign(G: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Responsibilities ``softmax(G W)`` by log-sum-exp, and the per-event log-normalisers.

    ``r = exp(L - max_k L) / sum_k exp(L - max_k L)`` and ``lse = max_k L + log sum_k ...``:
    one exp pass over the (N, K) buffer, which is reused in place (a single allocation).

    Returns:
        probs (N, K) and lse (N,).
    """
    logits = G @ W
    top = logits.amax(dim=-1, keepdim=True)
    probs = logits.sub_(top).exp_()
    total = probs.sum(dim=-1, keepdim=True)
    probs.div_(total)
    return probs, (top + total.log()).squeeze(-1)


def update_assignments(
    X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, q: MeanField
) -> torch.Tensor:
    r"""CAVI update of q(Z): ``r_nk = softmax_k(log q*(Z_n = k))``.

    .. math::
        \log r_{nk} \overset{+}{=} \log\pi_k - \tfrac{\tau}{2}\big(|x_n - m_k|^2 + 2/p_k\big)
            + s_n\big(\psi(a_k) - \log b_k\big) - a_k / b_k

    (PRML eq. 10.46 with a Poisson factor; Assignment 1B §1.3.2 and §1.3.5), normalised over k
    by log-sum-exp.

    Args:
        X: (N, 2); S: (N,); q: current parameters (``q.probs`` is not used).

    Returns:
        probs: (N, K), rows summing to 1.
    """
    X, S = as_data(X, S)
    q = as_mean_field(q, X)
    return assign(design(X, S), assignment_weights(hp, q))[0]


def locations_from_stats(
    stats: SufficientStats, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    """The update of q(mu_k) (:func:`update_locations`) from the statistics alone:
    ``p_k = rho + tau N_k``, ``m_k = (rho nu + tau sum_n r_nk x_n) / p_k``; (loc (K, 2),
    precision (K,))."""
    _, nu = _hp_tensors(hp, stats.sum_x)
    precision = hp.rho + hp.tau * stats.counts
    loc = (hp.rho * nu + hp.tau * stats.sum_x) / precision.unsqueeze(-1)
    return loc, precision


def update_locations(
    X: torch.Tensor, probs: torch.Tensor, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CAVI update of q(mu_k) = N(m_k, p_k^{-1} I) (Assignment 1B §1.3.4, PRML eq. 10.60-10.61):

    .. math::
        p_k = \rho + \tau N_k, \qquad
        m_k = \big(\rho\,\nu + \tau \textstyle\sum_n r_{nk} x_n\big) / p_k .

    Args:
        X: (N, 2); probs: (N, K).

    Returns:
        (loc (K, 2), precision (K,)).
    """
    X = torch.as_tensor(X, dtype=torch.float64)
    probs = torch.as_tensor(probs).to(X)
    return locations_from_stats(SufficientStats(probs.sum(0), probs.T @ X, None), hp)


def rates_from_stats(
    stats: SufficientStats, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    """The update of q(lambda_k) (:func:`update_rates`) from the statistics alone:
    ``a_k = alpha + sum_n r_nk s_n``, ``b_k = beta + N_k``; (concentration (K,), rate (K,))."""
    return hp.alpha + stats.sum_s, hp.beta + stats.counts


def update_rates(
    S: torch.Tensor, probs: torch.Tensor, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CAVI update of q(lambda_k) = Gamma(a_k, b_k) (Gamma-Poisson; Assignment 1B §1.3.3):

    .. math::
        a_k = \alpha + \textstyle\sum_n r_{nk} s_n, \qquad b_k = \beta + \sum_n r_{nk}.

    Args:
        S: (N,); probs: (N, K).

    Returns:
        (concentration (K,), rate (K,)).
    """
    S = torch.as_tensor(S, dtype=torch.float64)
    probs = torch.as_tensor(probs).to(S)
    return rates_from_stats(SufficientStats(probs.sum(0), None, probs.T @ S), hp)


def elbo_from_stats(
    stats: SufficientStats,
    neg_entropy_z: torch.Tensor,
    consts: DataConstants,
    hp: Hyperparameters,
    q: MeanField,
) -> torch.Tensor:
    r"""The ELBO, given r through its sufficient statistics and ``sum_nk r_nk log r_nk``.

    With N_k, \bar{x}_k = sum_n r_nk x_n, \bar{s}_k = sum_n r_nk s_n, E[.] under q::

        E log p(Z)        = sum_k N_k log pi_k
        E log p(X | Z,mu) = sum_k [N_k log(tau / 2pi)
                                   - tau/2 (N_k (|m_k|^2 + 2/p_k) - 2 m_k . \bar{x}_k)]
                            - tau/2 sum_n |x_n|^2
        E log p(S | Z,l)  = sum_k [\bar{s}_k E log l_k - N_k E l_k] - sum_n log(s_n!)
        E log p(mu)       = sum_k [log(rho / 2pi) - rho/2 (|m_k - nu|^2 + 2/p_k)]
        E log p(l)        = sum_k [alpha log beta - log Gamma(alpha)
                                   + (alpha - 1) E log l_k - beta E l_k]
        H[q(mu_k)]        = 1 + log 2pi - log p_k                  (2-D Gaussian entropy)
        H[q(l_k)]         = a_k - log b_k + log Gamma(a_k) + (1 - a_k) psi(a_k)
        H[q(Z)]           = -sum_nk r_nk log r_nk
    """
    mixing, nu = _hp_tensors(hp, q.loc)
    counts, sum_x, sum_s = stats
    a, b, m, p = q.concentration, q.rate, q.loc, q.precision
    e_rate = a / b
    e_log_rate = torch.digamma(a) - torch.log(b)
    e_sq_loc = m.pow(2).sum(-1) + 2.0 / p

    log_p_z = (counts * torch.log(mixing)).sum()
    log_p_x = (counts * (math.log(hp.tau) - LOG_2PI)).sum() - 0.5 * hp.tau * (
        (counts * e_sq_loc).sum() - 2.0 * (m * sum_x).sum() + consts.sum_sq_x
    )
    log_p_s = (sum_s * e_log_rate - counts * e_rate).sum() - consts.sum_log_factorial_s
    log_p_mu = (
        math.log(hp.rho) - LOG_2PI - 0.5 * hp.rho * ((m - nu).pow(2).sum(-1) + 2.0 / p)
    ).sum()
    log_p_rate = (
        hp.alpha * math.log(hp.beta)
        - math.lgamma(hp.alpha)
        + (hp.alpha - 1.0) * e_log_rate
        - hp.beta * e_rate
    ).sum()
    entropy_mu = (1.0 + LOG_2PI - torch.log(p)).sum()
    entropy_rate = (a - torch.log(b) + torch.lgamma(a) + (1.0 - a) * torch.digamma(a)).sum()
    return (
        log_p_z
        + log_p_x
        + log_p_s
        + log_p_mu
        + log_p_rate
        + entropy_mu
        + entropy_rate
        - neg_entropy_z
    )


def elbo(X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, q: MeanField) -> torch.Tensor:
    r"""Exact ELBO ``E_q[log p(X, S, Z, mu, lambda)] - E_q[log q]`` at ANY variational parameters.

    All constants are kept, so this is a true lower bound on ``log p(X, S)`` and equals the
    expectation of Pyro's Monte Carlo ELBO for the same model and guide. Term by term formulas
    are in :func:`elbo_from_stats`. Differentiable in every field of ``q``.

    Args:
        X: locations (N, 2); S: strengths (N,) (anything :func:`as_data` accepts);
        hp: hyperparameters; q: :class:`MeanField`, any float dtype (converted to float64).

    Returns:
        0-dim float64 tensor, the ELBO (to maximise; a loss would be its negative).

    Raises:
        ValueError: bad data or q (naming the field), or an ELBO that overflows float64.
    """
    X, S = as_data(X, S)
    q = checked_mean_field(q, X, hp.num_clusters)
    stats = stats_from_design(design(X, S), q.probs)
    neg_entropy_z = torch.xlogy(q.probs, q.probs).sum()
    return finite_elbo(elbo_from_stats(stats, neg_entropy_z, data_constants(X, S), hp, q), hp)


def cavi_step_from_design(
    G: torch.Tensor, consts: DataConstants, hp: Hyperparameters, q: MeanField
) -> tuple[MeanField, torch.Tensor]:
    """One CAVI sweep (:func:`cavi_step`) on the design G (N, 4) and the data constants, as the
    drivers call it: q(Z), then q(mu) and q(lambda); returns (new q, its exact ELBO)."""
    W = assignment_weights(hp, q)
    probs, lse = assign(G, W)
    stats = stats_from_design(G, probs)
    # sum_nk r log r = sum_nk r (G W)_nk - sum_n lse_n, and sum_nk r (G W)_nk = <r^T G, W^T>:
    # the entropy of q(Z) comes from the statistics, without another pass over (N, K).
    moments = torch.cat([stats.counts[:, None], stats.sum_x, stats.sum_s[:, None]], dim=1)
    neg_entropy_z = (moments * W.T).sum() - lse.sum()
    loc, precision = locations_from_stats(stats, hp)
    concentration, rate = rates_from_stats(stats, hp)
    q = MeanField(probs, loc, precision, concentration, rate)
    return q, elbo_from_stats(stats, neg_entropy_z, consts, hp, q)


def cavi_step(
    X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, q: MeanField
) -> tuple[MeanField, torch.Tensor]:
    """One CAVI sweep: q(Z) given the globals, then q(mu) and q(lambda) given q(Z).

    Args:
        X: (N, 2); S: (N,) (anything :func:`as_data` accepts); q: current parameters (its
        ``probs`` are replaced first).

    Returns:
        (new float64 :class:`MeanField`, its ELBO as a 0-dim tensor).
    """
    X, S = as_data(X, S)
    q = checked_mean_field(q, X, hp.num_clusters)
    q, value = cavi_step_from_design(design(X, S), data_constants(X, S), hp, q)
    return q, finite_elbo(value, hp)
