"""The earthquake mixture's fixed quantities and variational parameters, and the checks every
entry point applies before any work: :class:`Hyperparameters` (validated on construction),
:class:`MeanField`, :class:`CaviResult`, the data checks (:func:`check_data`, :func:`as_data`:
float64, finite, |x| <= 1e150, integer strengths in [0, 2**53]) and the settings of CAVI.

Model (precision parameterisation, 2-D locations, ``n = 1..N``, ``k = 1..K``)::

    Z_n ~ Cat(pi),  X_n | Z_n = k ~ N_2(mu_k, tau^{-1} I),  S_n | Z_n = k ~ Poisson(lambda_k),
    mu_k ~ N_2(nu, rho^{-1} I),  lambda_k ~ Gamma(alpha, beta)   (shape alpha, rate beta)

Mean field::

    q = prod_n Cat(Z_n | r_n) prod_k N_2(mu_k | m_k, p_k^{-1} I) Gamma(lambda_k | a_k, b_k)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from analytic._validate import number, positive

__all__ = [
    "MAX_LOCATION",
    "MAX_STRENGTH",
    "CaviResult",
    "Hyperparameters",
    "MeanField",
    "as_data",
    "as_mean_field",
    "check_cavi_settings",
    "check_data",
    "check_mean_field",
    "checked_mean_field",
]


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


def as_mean_field(q: MeanField, like: torch.Tensor) -> MeanField:
    """``q`` in the dtype and device of ``like`` (float64 data), differentiably."""
    if not isinstance(q, MeanField):
        raise ValueError(f"q must be a MeanField, got {type(q).__name__}")
    fields = []
    for name, value in zip(MeanField._fields, q):
        if not torch.is_tensor(value):
            raise ValueError(f"q.{name} must be a tensor, got {type(value).__name__}")
        fields.append(value.to(dtype=like.dtype, device=like.device))
    return MeanField(*fields)


def checked_mean_field(q: MeanField, X: torch.Tensor, num_clusters: int) -> MeanField:
    """``q`` converted to X's dtype and device (:func:`as_mean_field`) and checked against
    the N events of X and K clusters (:func:`check_mean_field`)."""
    q = as_mean_field(q, X)
    check_mean_field(q, X.shape[0], num_clusters)
    return q


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
