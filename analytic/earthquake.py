r"""Closed-form coordinate-ascent variational inference (CAVI) for the earthquake mixture.

Model (precision parameterisation, 2-D locations, ``n = 1..N``, ``k = 1..K``)::

    Z_n           ~ Cat(pi)
    X_n | Z_n = k ~ N_2(mu_k, tau^{-1} I)
    S_n | Z_n = k ~ Poisson(lambda_k)
    mu_k          ~ N_2(nu, rho^{-1} I)
    lambda_k      ~ Gamma(alpha, beta)          (shape alpha, rate beta)

Mean-field family::

    q = prod_n Cat(Z_n | r_n) prod_k N_2(mu_k | m_k, p_k^{-1} I) Gamma(lambda_k | a_k, b_k)

Every update below is derived from ``log q*(block) = E_{q(-block)}[log p(X, S, Z, mu, lambda)]``
(Bishop 2006, PRML §10.1.1, eq. 10.9; Blei, Kucukelbir & McAuliffe 2017, eq. 18). The source
notes ``../shared/seeds/001_*.txt`` §1.3 reach the same updates; ``000_*.txt`` uses tau as a
variance, which is wrong, and both write the 1-D normaliser ``sqrt(tau / 2 pi)`` where the 2-D
density has ``tau / (2 pi)``. The tests check every formula here against Pyro's Monte Carlo ELBO
and against autograd, so neither source is trusted.

Expectations under q used throughout (Gamma with shape a, rate b; psi = digamma)::

    E[lambda_k]        = a_k / b_k
    E[log lambda_k]    = psi(a_k) - log b_k
    E[|x - mu_k|^2]    = |x - m_k|^2 + 2 / p_k

Implementation: everything the ELBO and the global updates need from the ``(N, K)``
responsibilities is three sufficient statistics, obtained by one matrix product
``r^T G`` with the ``(N, 4)`` design ``G = [1, x_1, x_2, s]``; the assignment logits are one
product ``G W``. No ``(N, K, 2)`` temporary is ever formed; memory is O(NK).

This module is pure torch (plus ``math``); it never imports Pyro.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from analytic._validate import number, positive

__all__ = [
    "CaviResult",
    "Hyperparameters",
    "MeanField",
    "SufficientStats",
    "as_data",
    "best_label_order",
    "canonical_order",
    "cavi",
    "cavi_step",
    "check_cavi_settings",
    "check_data",
    "check_mean_field",
    "elbo",
    "initial_mean_field",
    "kmeans_plus_plus",
    "label_order",
    "log_joint_marginal",
    "permute_clusters",
    "sufficient_stats",
    "update_assignments",
    "update_locations",
    "update_rates",
]

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Parameters and containers
# --------------------------------------------------------------------------------------------


def _numbers(name: str, value, what: str) -> tuple[float, ...]:
    """``value`` as a tuple of floats, or a ValueError naming ``name`` (never a TypeError)."""
    try:
        if isinstance(value, (str, bytes)) or isinstance(value, bool):
            raise TypeError
        items = tuple(value.tolist()) if torch.is_tensor(value) else tuple(value)
        return tuple(number(name, v, what) for v in items)
    except TypeError:
        raise ValueError(f"{name} must be {what}, got {value!r}") from None


@dataclass(frozen=True)
class Hyperparameters:
    """Fixed quantities of the earthquake mixture, validated on construction.

    Attributes:
        num_clusters: K >= 1, the number of super-epicentres.
        mixing: pi, K positive weights summing to 1 (default uniform), shape (K,).
        tau: precision of an event's location around its centre (units: 1 / coordinate^2).
        nu: prior mean of every centre, 2 numbers.
        rho: prior precision of every centre.
        alpha: shape of the Gamma prior on each Poisson rate.
        beta: rate of the Gamma prior on each Poisson rate (prior mean alpha / beta).

    Raises:
        ValueError: naming the field, the value and what is allowed.
    """

    num_clusters: int
    mixing: tuple[float, ...] | None = None
    tau: float = 0.01
    nu: tuple[float, float] = (0.0, 0.0)
    rho: float = 1e-3
    alpha: float = 1.0
    beta: float = 0.1

    def __post_init__(self) -> None:
        k = self.num_clusters
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"num_clusters must be an integer >= 1, got {k!r}")
        for name in ("tau", "rho", "alpha", "beta"):
            object.__setattr__(self, name, positive(name, getattr(self, name)))
        nu = _numbers("nu", self.nu, "2 finite numbers")
        if len(nu) != 2 or not all(math.isfinite(v) for v in nu):
            raise ValueError(f"nu must be 2 finite numbers, got {self.nu!r}")
        object.__setattr__(self, "nu", nu)
        if self.mixing is None:
            mixing = (1.0 / k,) * k
        else:
            mixing = _numbers("mixing", self.mixing, f"{k} positive numbers summing to 1")
            if len(mixing) != k:
                raise ValueError(
                    f"mixing must have num_clusters={k} entries, got {len(mixing)}: {mixing!r}"
                )
            if not all(math.isfinite(v) and v > 0 for v in mixing):
                raise ValueError(f"mixing must be positive and finite, got {mixing!r}")
            if abs(sum(mixing) - 1.0) > 1e-6:
                raise ValueError(f"mixing must sum to 1, got sum {sum(mixing)!r}")
        object.__setattr__(self, "mixing", mixing)


class MeanField(NamedTuple):
    """Variational parameters of q (see module docstring).

    Attributes:
        probs: r, responsibilities q(Z_n = k), shape (N, K), rows sum to 1.
        loc: m, means of q(mu_k), shape (K, 2).
        precision: p, precisions of q(mu_k) (covariance p_k^{-1} I), shape (K,).
        concentration: a, Gamma shapes of q(lambda_k), shape (K,).
        rate: b, Gamma rates of q(lambda_k), shape (K,).
    """

    probs: torch.Tensor
    loc: torch.Tensor
    precision: torch.Tensor
    concentration: torch.Tensor
    rate: torch.Tensor


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


class CaviResult(NamedTuple):
    """Result of :func:`cavi`.

    Attributes:
        q: the variational parameters of the best restart.
        elbo: its final ELBO (0-dim tensor; to maximise).
        elbo_history: ELBO of the best restart at its start (index 0) and after each sweep,
            shape (num_iter + 1,).
        num_iter: iterations run by the best restart.
        converged: whether the best restart met the tolerance before ``max_iter``.
    """

    q: MeanField
    elbo: torch.Tensor
    elbo_history: torch.Tensor
    num_iter: int
    converged: bool


# --------------------------------------------------------------------------------------------
# Validation and data layout
# --------------------------------------------------------------------------------------------


MAX_STRENGTH = 2**53  # the largest integer range float64 holds exactly
MAX_LOCATION = 1e150  # |x|^2 and sums of N of them stay far inside float64


def check_data(X: torch.Tensor, S: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the field and the first offending value of bad data.

    Args:
        X: event locations, shape (N, 2), finite, each coordinate within +-1e150 (so that
            |x|^2 and its sum over events cannot overflow float64).
        S: event strengths, shape (N,), integers in [0, 2**53] (float64 holds every integer
            up to 2**53 and no longer all of them beyond), in any dtype that holds them.
    """
    for name, value in (("X", X), ("S", S)):
        if not torch.is_tensor(value):
            raise ValueError(
                f"{name} must be a tensor, got {type(value).__name__} (as_data converts lists "
                "and arrays)"
            )
    if X.dim() != 2 or X.shape[1] != 2:
        raise ValueError(f"X must be a tensor of shape (N, 2), got shape {tuple(X.shape)}")
    if S.dim() != 1:
        raise ValueError(f"S must be a tensor of shape (N,), got shape {tuple(S.shape)}")
    if X.shape[0] != S.shape[0]:
        raise ValueError(
            f"X and S must have the same length, got {X.shape[0]} locations "
            f"and {S.shape[0]} strengths"
        )
    if X.shape[0] == 0:
        raise ValueError("X and S are empty: at least one event is needed")
    if X.is_complex() or S.is_complex() or X.dtype == torch.bool:
        raise ValueError(f"X and S must be real numbers, got dtypes {X.dtype} and {S.dtype}")
    bad = ~(torch.isfinite(X) & (X.abs() <= MAX_LOCATION)).all(dim=1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"X must be finite with |coordinates| <= {MAX_LOCATION:g}; {int(bad.sum())} bad "
            f"row(s), first at index {i}: {X[i].tolist()}"
        )
    if S.is_floating_point():
        S64 = S.to(torch.float64)
        bad = ~torch.isfinite(S64) | (S64 < 0) | (S64 != torch.round(S64)) | (S64 > MAX_STRENGTH)
    else:  # compared as integers: 2**53 + 1 in int64 would round to 2**53 in float64
        bad = (S < 0) | (S > MAX_STRENGTH)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"S must hold integers in [0, 2**53]; {int(bad.sum())} bad value(s), "
            f"first at index {i}: {S[i].item()!r}"
        )


def as_data(X, S) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, S)`` as float64 tensors on X's device, checked by :func:`check_data`.

    Every closed form here computes in float64: in float32 the ELBO of a catalog with large
    strengths is a difference of terms of order 10^8, and CAVI's ELBO was seen to fall by
    10^3 nats between sweeps from rounding alone. Lists, NumPy arrays and tensors of any real
    dtype are accepted.

    Raises:
        ValueError: naming X or S and the offending value.
    """
    converted = []
    for name, value in (("X", X), ("S", S)):
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}: "
                             f"{err}") from None  # fmt: skip
        if t.is_complex():
            raise ValueError(f"{name} must be real, got dtype {t.dtype}")
        converted.append(t)
    X, S = converted
    X, S = X.to(torch.float64), S.to(device=X.device, dtype=torch.float64)
    check_data(X, S)
    return X, S


def check_mean_field(q: MeanField, num_events: int, num_clusters: int) -> None:
    """Raise ``ValueError`` naming the field if q's shapes or values are not a valid q:
    every field a finite tensor of its shape, precision, concentration and rate > 0, probs
    non-negative with rows summing to 1 (to 1e-5)."""
    shapes = {
        "probs": (num_events, num_clusters),
        "loc": (num_clusters, 2),
        "precision": (num_clusters,),
        "concentration": (num_clusters,),
        "rate": (num_clusters,),
    }
    for name, shape in shapes.items():
        value = getattr(q, name)
        if not torch.is_tensor(value):
            raise ValueError(f"q.{name} must be a tensor, got {type(value).__name__}")
        if tuple(value.shape) != shape:
            raise ValueError(f"q.{name} must have shape {shape}, got {tuple(value.shape)}")
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            raise ValueError(f"q.{name} must be finite, got {value[bad].flatten()[0].item()!r}")
    for name in ("precision", "concentration", "rate"):
        value = getattr(q, name)
        if not bool((value > 0).all()):
            raise ValueError(f"q.{name} must be > 0, got {value.tolist()}")
    if bool((q.probs < 0).any()) or not torch.allclose(
        q.probs.sum(-1), torch.ones((), dtype=q.probs.dtype), atol=1e-5
    ):
        raise ValueError("q.probs must be non-negative with rows summing to 1")


def _as_mean_field(q: MeanField, like: torch.Tensor) -> MeanField:
    """``q`` in the dtype and device of ``like`` (float64 data), differentiably."""
    if not isinstance(q, MeanField):
        raise ValueError(f"q must be a MeanField, got {type(q).__name__}")
    fields = []
    for name, value in zip(MeanField._fields, q):
        if not torch.is_tensor(value):
            raise ValueError(f"q.{name} must be a tensor, got {type(value).__name__}")
        fields.append(value.to(dtype=like.dtype, device=like.device))
    return MeanField(*fields)


def _checked_mean_field(q: MeanField, X: torch.Tensor, num_clusters: int) -> MeanField:
    """``q`` converted to X's dtype and device (:func:`_as_mean_field`) and checked against
    the N events of X and K clusters (:func:`check_mean_field`)."""
    q = _as_mean_field(q, X)
    check_mean_field(q, X.shape[0], num_clusters)
    return q


def _finite_elbo(value: torch.Tensor, hp: Hyperparameters) -> torch.Tensor:
    if not bool(torch.isfinite(value)):
        raise ValueError(
            f"the ELBO is {value.item()}: the data or the hyperparameters are too extreme for "
            f"float64 (tau={hp.tau!r}, rho={hp.rho!r}, alpha={hp.alpha!r}, beta={hp.beta!r})"
        )
    return value


def _design(X: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """The ``(N, 4)`` design ``G = [1, x_1, x_2, s]`` in the dtype of X."""
    return torch.cat([torch.ones_like(X[:, :1]), X, S.to(X.dtype).unsqueeze(-1)], dim=-1)


class _DataConstants(NamedTuple):
    """Terms of the ELBO that depend on the data alone (sum_k r_nk = 1 removes r)."""

    sum_sq_x: torch.Tensor  # sum_n |x_n|^2
    sum_log_factorial_s: torch.Tensor  # sum_n log(s_n!)


def _data_constants(X: torch.Tensor, S: torch.Tensor) -> _DataConstants:
    S = S.to(X.dtype)
    return _DataConstants(X.pow(2).sum(), torch.lgamma(S + 1).sum())


def _stats_from_design(G: torch.Tensor, probs: torch.Tensor) -> SufficientStats:
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
    return _stats_from_design(_design(X, S), torch.as_tensor(probs).to(X))


def _hp_tensors(hp: Hyperparameters, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kw = {"dtype": like.dtype, "device": like.device}
    return torch.tensor(hp.mixing, **kw), torch.tensor(hp.nu, **kw)


# --------------------------------------------------------------------------------------------
# Coordinate updates
# --------------------------------------------------------------------------------------------


def _assignment_weights(hp: Hyperparameters, q: MeanField) -> torch.Tensor:
    r"""``W`` of shape (4, K) such that ``G @ W`` are the unnormalised log q*(Z_n = k).

    log q*(Z_n = k) = log pi_k - tau/2 E|x_n - mu_k|^2 + s_n E[log lambda_k] - E[lambda_k] + c_n
                    = [log pi_k - tau/2 (|m_k|^2 + 2/p_k) - a_k/b_k]        (row of the "1")
                      + x_n . (tau m_k)                                       (rows of x_1, x_2)
                      + s_n (psi(a_k) - log b_k)                              (row of s)
                      + c_n,

    where c_n collects -tau/2 |x_n|^2, log(tau / 2 pi) and -log(s_n!), which cancel in the
    normalisation (PRML eq. 10.46-10.49 with a Poisson term added; seeds/001 §1.3.2).
    """
    mixing, _ = _hp_tensors(hp, q.loc)
    expected_rate = q.concentration / q.rate
    expected_log_rate = torch.digamma(q.concentration) - torch.log(q.rate)
    expected_sq_loc = q.loc.pow(2).sum(-1) + 2.0 / q.precision
    bias = torch.log(mixing) - 0.5 * hp.tau * expected_sq_loc - expected_rate
    return torch.cat([bias.unsqueeze(0), hp.tau * q.loc.T, expected_log_rate.unsqueeze(0)], dim=0)


def _assign(G: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    (PRML eq. 10.46 with a Poisson factor; seeds/001 §1.3.2 and §1.3.5), normalised over k
    by log-sum-exp.

    Args:
        X: (N, 2); S: (N,); q: current parameters (``q.probs`` is not used).

    Returns:
        probs: (N, K), rows summing to 1.
    """
    X, S = as_data(X, S)
    q = _as_mean_field(q, X)
    return _assign(_design(X, S), _assignment_weights(hp, q))[0]


def _locations_from_stats(
    stats: SufficientStats, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    _, nu = _hp_tensors(hp, stats.sum_x)
    precision = hp.rho + hp.tau * stats.counts
    loc = (hp.rho * nu + hp.tau * stats.sum_x) / precision.unsqueeze(-1)
    return loc, precision


def update_locations(
    X: torch.Tensor, probs: torch.Tensor, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CAVI update of q(mu_k) = N(m_k, p_k^{-1} I) (seeds/001 §1.3.4, PRML eq. 10.60-10.61):

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
    return _locations_from_stats(SufficientStats(probs.sum(0), probs.T @ X, None), hp)


def _rates_from_stats(
    stats: SufficientStats, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    return hp.alpha + stats.sum_s, hp.beta + stats.counts


def update_rates(
    S: torch.Tensor, probs: torch.Tensor, hp: Hyperparameters
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CAVI update of q(lambda_k) = Gamma(a_k, b_k) (Gamma-Poisson conjugacy; seeds/001 §1.3.3):

    .. math::
        a_k = \alpha + \textstyle\sum_n r_{nk} s_n, \qquad b_k = \beta + \sum_n r_{nk}.

    Args:
        S: (N,); probs: (N, K).

    Returns:
        (concentration (K,), rate (K,)).
    """
    S = torch.as_tensor(S, dtype=torch.float64)
    probs = torch.as_tensor(probs).to(S)
    return _rates_from_stats(SufficientStats(probs.sum(0), None, probs.T @ S), hp)


# --------------------------------------------------------------------------------------------
# The ELBO
# --------------------------------------------------------------------------------------------


def _elbo_from_stats(
    stats: SufficientStats,
    neg_entropy_z: torch.Tensor,
    consts: _DataConstants,
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
    log_p_x = (counts * (math.log(hp.tau) - _LOG_2PI)).sum() - 0.5 * hp.tau * (
        (counts * e_sq_loc).sum() - 2.0 * (m * sum_x).sum() + consts.sum_sq_x
    )
    log_p_s = (sum_s * e_log_rate - counts * e_rate).sum() - consts.sum_log_factorial_s
    log_p_mu = (
        math.log(hp.rho) - _LOG_2PI - 0.5 * hp.rho * ((m - nu).pow(2).sum(-1) + 2.0 / p)
    ).sum()
    log_p_rate = (
        hp.alpha * math.log(hp.beta)
        - math.lgamma(hp.alpha)
        + (hp.alpha - 1.0) * e_log_rate
        - hp.beta * e_rate
    ).sum()
    entropy_mu = (1.0 + _LOG_2PI - torch.log(p)).sum()
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
    are in :func:`_elbo_from_stats`. Differentiable in every field of ``q``.

    Args:
        X: locations (N, 2); S: strengths (N,) (anything :func:`as_data` accepts);
        hp: hyperparameters; q: :class:`MeanField`, any float dtype (converted to float64).

    Returns:
        0-dim float64 tensor, the ELBO (to maximise; a loss would be its negative).

    Raises:
        ValueError: bad data or q (naming the field), or an ELBO that overflows float64.
    """
    X, S = as_data(X, S)
    q = _checked_mean_field(q, X, hp.num_clusters)
    stats = _stats_from_design(_design(X, S), q.probs)
    neg_entropy_z = torch.xlogy(q.probs, q.probs).sum()
    return _finite_elbo(_elbo_from_stats(stats, neg_entropy_z, _data_constants(X, S), hp, q), hp)


# --------------------------------------------------------------------------------------------
# Initialisation and the CAVI driver
# --------------------------------------------------------------------------------------------


def kmeans_plus_plus(
    X: torch.Tensor, num_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is an event drawn with
    probability proportional to its squared distance to the nearest centre chosen so far.

    Args:
        X: (N, 2); num_clusters: K; generator: a CPU ``torch.Generator``.

    Returns:
        centres: (K, 2), rows of X.
    """
    N = X.shape[0]
    first = int(torch.randint(N, (1,), generator=generator))
    centres = [X[first]]
    sq_dist = (X - X[first]).pow(2).sum(-1)
    for _ in range(1, num_clusters):
        weights = sq_dist.double().cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than clusters
            weights = torch.ones(N, dtype=torch.float64)
        i = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(X[i])
        sq_dist = torch.minimum(sq_dist, (X - X[i]).pow(2).sum(-1))
    return torch.stack(centres)


def initial_mean_field(
    X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, generator: torch.Generator
) -> MeanField:
    """A starting point for CAVI or SVI, as if every cluster had seen an equal share N/K of the
    events: centres seeded by k-means++ (Arthur & Vassilvitskii 2007), and, when pi is not
    uniform, labelled so that the centre nearest to the most events gets the largest pi;
    q(mu_k) with precision rho + tau N/K; q(lambda_k) with a = alpha + mean(S) N/K and
    b = beta + N/K (so E[lambda_k] is about the mean strength); uniform responsibilities.
    Starting the variance parameters at the right scale matters for SVI, whose noisy steps move
    them slowly.

    Returns:
        :class:`MeanField` in the dtype and device of X.
    """
    check_data(X, S)
    N, K = X.shape[0], hp.num_clusters
    kw = {"dtype": X.dtype, "device": X.device}
    share = torch.full((K,), N / K, **kw)
    mean_s = S.to(X.dtype).mean()
    centres = kmeans_plus_plus(X, K, generator)
    if len(set(hp.mixing)) > 1:  # labels matter: the largest pi to the most crowded centre
        nearest = torch.cdist(X, centres).argmin(-1)
        crowd = torch.bincount(nearest, minlength=K).to(X.dtype)
        mixing = torch.tensor(hp.mixing, **kw)
        perm = torch.empty(K, dtype=torch.long, device=X.device)
        perm[torch.argsort(mixing, descending=True, stable=True)] = torch.argsort(
            crowd, descending=True, stable=True
        )
        centres = centres[perm]
    return MeanField(
        probs=torch.full((N, K), 1.0 / K, **kw),
        loc=centres,
        precision=hp.rho + hp.tau * share,
        concentration=hp.alpha + mean_s * share,
        rate=hp.beta + share,
    )


def _cavi_step(
    G: torch.Tensor, consts: _DataConstants, hp: Hyperparameters, q: MeanField
) -> tuple[MeanField, torch.Tensor]:
    W = _assignment_weights(hp, q)
    probs, lse = _assign(G, W)
    stats = _stats_from_design(G, probs)
    # sum_nk r log r = sum_nk r (G W)_nk - sum_n lse_n, and sum_nk r (G W)_nk = <r^T G, W^T>:
    # the entropy of q(Z) comes from the statistics, without another pass over (N, K).
    moments = torch.cat([stats.counts[:, None], stats.sum_x, stats.sum_s[:, None]], dim=1)
    neg_entropy_z = (moments * W.T).sum() - lse.sum()
    loc, precision = _locations_from_stats(stats, hp)
    concentration, rate = _rates_from_stats(stats, hp)
    q = MeanField(probs, loc, precision, concentration, rate)
    return q, _elbo_from_stats(stats, neg_entropy_z, consts, hp, q)


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
    q = _checked_mean_field(q, X, hp.num_clusters)
    q, value = _cavi_step(_design(X, S), _data_constants(X, S), hp, q)
    return q, _finite_elbo(value, hp)


def permute_clusters(q: MeanField, perm) -> MeanField:
    """``q`` relabelled: cluster ``perm[k]`` of q becomes cluster k (every field moves with it).

    Args:
        q: :class:`MeanField` with K clusters (``probs`` may be None, as in a streamed run);
            perm: a permutation of range(K) (list or tensor).
    """
    perm = torch.as_tensor(perm, dtype=torch.long, device=q.loc.device)
    probs = None if q.probs is None else q.probs[:, perm]
    return MeanField(probs, q.loc[perm], q.precision[perm], q.concentration[perm], q.rate[perm])


def label_order(counts: torch.Tensor, hp: Hyperparameters) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The relabelling with the highest ELBO for clusters of sizes ``counts``, and its gain.

    Relabelling moves whole clusters, so of all ELBO terms (:func:`_elbo_from_stats`) only
    E log p(Z) = sum_k N_k log pi_k changes: the priors on mu and lambda are the same for every
    cluster, and every other term follows its cluster. The best relabelling maximises
    sum_k N_{perm[k]} log pi_k, and by the rearrangement inequality (Hardy, Littlewood & Polya,
    Inequalities, Thm. 368) that pairs the clusters sorted by N_k with the labels sorted by
    pi_k: no search over the K! orders is needed.

    Args:
        counts: N_k = sum_n r_nk, shape (K,).

    Returns:
        perm: (K,) long, for :func:`permute_clusters`; gain: 0-dim, the ELBO increase (>= 0).
    """
    log_pi = torch.log(torch.tensor(hp.mixing, dtype=counts.dtype, device=counts.device))
    perm = torch.empty_like(counts, dtype=torch.long)
    perm[torch.argsort(log_pi, descending=True, stable=True)] = torch.argsort(
        counts, descending=True, stable=True
    )
    gain = ((counts[perm] - counts) * log_pi).sum()
    return perm, gain


def best_label_order(q: MeanField, hp: Hyperparameters) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`label_order` for the cluster sizes ``N_k = sum_n r_nk`` of ``q.probs``."""
    return label_order(q.probs.sum(0), hp)


def _sweeps(G, consts, hp, q, history, max_iter: int, tol: float):
    """CAVI sweeps from q until the relative gain of a sweep is <= tol (or max_iter sweeps);
    appends each ELBO to ``history``; returns (q, converged)."""
    for _ in range(max_iter):
        q, value = _cavi_step(G, consts, hp, q)
        history.append(value)
        if abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
            return q, True
    return q, False


def _fit_from(G, consts, hp, q, max_iter: int, tol: float) -> CaviResult:
    """Sweeps to convergence, then the best relabelling (:func:`best_label_order`) while it
    gains more than tol * |ELBO|, sweeping again from each relabelled state. Every step keeps
    the ELBO non-decreasing, so ``elbo_history`` stays monotone."""
    neg_entropy_z = torch.xlogy(q.probs, q.probs).sum()
    history = [_elbo_from_stats(_stats_from_design(G, q.probs), neg_entropy_z, consts, hp, q)]
    q, converged = _sweeps(G, consts, hp, q, history, max_iter, tol)
    while len(history) <= max_iter:
        perm, gain = best_label_order(q, hp)
        if not gain > tol * abs(history[-1]):
            break
        q = permute_clusters(q, perm)
        history.append(history[-1] + gain)
        q, converged = _sweeps(G, consts, hp, q, history, max_iter + 1 - len(history), tol)
    return CaviResult(q, history[-1], torch.stack(history), len(history) - 1, converged)


def check_cavi_settings(max_iter, num_init, tol, seed) -> None:
    """Raise ValueError naming the setting unless max_iter and num_init are integers >= 1,
    tol a finite number >= 0 and seed an integer in [0, 2**63)."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if isinstance(num_init, bool) or not isinstance(num_init, int) or num_init < 1:
        raise ValueError(f"num_init must be an integer >= 1, got {num_init!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < math.inf:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")


def canonical_order(hp: Hyperparameters) -> tuple[list[int], list[int], Hyperparameters]:
    """(order, back, canonical): the labels sorted by pi decreasing (stable, so uniform pi keeps
    every label where it is), the permutation that maps them back, and hp with pi in that
    order. CAVI runs in this order, so its result does not depend on the order pi is given in."""
    order = sorted(range(hp.num_clusters), key=lambda k: -hp.mixing[k])
    back = [order.index(k) for k in range(hp.num_clusters)]
    return order, back, dataclasses.replace(hp, mixing=tuple(hp.mixing[k] for k in order))


def cavi(
    X: torch.Tensor,
    S: torch.Tensor,
    hp: Hyperparameters,
    *,
    max_iter: int = 500,
    tol: float = 1e-8,
    num_init: int = 5,
    seed: int = 0,
    init: MeanField | None = None,
) -> CaviResult:
    """Run CAVI from ``num_init`` k-means++ starts and keep the one with the highest ELBO.

    A restart stops when the ELBO gain of one sweep is at most ``tol * |ELBO|``. The ELBO is
    non-decreasing along the sweeps (each update is the exact maximiser of its block).

    The mixing weights pi are fixed, so the clusters are not exchangeable and no sweep can swap
    two labels: after a restart converges, the clusters are relabelled in the best order
    (:func:`best_label_order`) and swept again, until no relabelling gains. The run itself uses
    pi sorted in decreasing order and maps the labels back at the end, so the result does not
    depend on the order in which the components of pi are given.

    Args:
        X: locations (N, 2); S: strengths (N,): anything :func:`as_data` accepts; the run is
            in float64 whatever their dtype (see :func:`as_data` for why), on X's device.
        hp: hyperparameters. max_iter: sweeps per restart (>= 1). tol: relative tolerance (>= 0).
        num_init: restarts (>= 1). seed: seeds the k-means++ draws.
        init: start from these parameters instead (then ``num_init`` is ignored).

    Returns:
        :class:`CaviResult` of the best restart (``num_iter`` counts sweeps and relabellings).
    """
    X, S = as_data(X, S)
    check_cavi_settings(max_iter, num_init, tol, seed)
    order, back, canonical = canonical_order(hp)
    G, consts = _design(X, S), _data_constants(X, S)
    generator = torch.Generator().manual_seed(seed)
    if init is not None:
        init = _checked_mean_field(init, X, hp.num_clusters)
        starts = [permute_clusters(init, order)]
    else:
        starts = (initial_mean_field(X, S, canonical, generator) for _ in range(num_init))

    best: CaviResult | None = None
    for q in starts:
        result = _fit_from(G, consts, canonical, q, max_iter, tol)
        _finite_elbo(result.elbo, hp)
        if best is None or result.elbo > best.elbo:
            best = result
    return best._replace(q=permute_clusters(best.q, back))


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
    log_prior_mu = (-_LOG_2PI + math.log(hp.rho) - 0.5 * hp.rho * (mu - nu).square().sum(-1)).sum(
        -1
    )
    log_prior_lam = (
        hp.alpha * math.log(hp.beta) - math.lgamma(hp.alpha)
        + (hp.alpha - 1) * torch.log(lam) - hp.beta * lam
    ).sum(-1)  # fmt: skip
    # (..., N, K): |x_n - mu_k|^2 = |x_n|^2 - 2 x_n . mu_k + |mu_k|^2, no (..., N, K, 2) temporary
    sq = (X.square().sum(-1, keepdim=True) - 2 * X @ mu.transpose(-1, -2)
          + mu.square().sum(-1).unsqueeze(-2))  # fmt: skip
    log_lik = (
        log_pi - _LOG_2PI + math.log(hp.tau) - 0.5 * hp.tau * sq
        + S.unsqueeze(-1) * torch.log(lam).unsqueeze(-2) - lam.unsqueeze(-2)
        - torch.lgamma(S + 1).unsqueeze(-1)
    )  # fmt: skip
    return log_prior_mu + log_prior_lam + torch.logsumexp(log_lik, -1).sum(-1)
