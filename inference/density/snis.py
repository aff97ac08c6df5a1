r"""Self-normalised importance sampling (SNIS): expectations under an unnormalised density.

For a target p(x) = exp(E(x)) / Z with Z = int exp(E) unknown, and draws x_1..x_M ~ q
(Owen 2013, "Monte Carlo theory, methods and examples", Ch. 9.2, eqs. 9.3 and 9.8)::

    log w_m = E(x_m) - log q(x_m),       w~_m = w_m / sum_m' w_m'
    F^ = sum_m w~_m f(x_m)               (estimates E_p[f]; consistent, bias O(1/M))
    se(F^)^2 ~= sum_m w~_m^2 (f(x_m) - F^)^2       (the delta method)
    Z^ = (1/M) sum_m w_m                 (unbiased for Z)
    se(log Z^) ~= sd(w) / (mean(w) sqrt(M))        (the delta method on log)
    ESS = (sum_m w_m)^2 / sum_m w_m^2    (Kong 1992; M when q = p, 1 when one draw dominates)

Everything is computed from log weights (shifted by their maximum), so weights spanning
hundreds of orders of magnitude neither overflow nor underflow. Shapes: log weights (M,), f
values (M, ...). Pure torch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "LogNormaliser",
    "effective_sample_size",
    "log_normaliser",
    "normalised_weights",
    "snis_mean",
]


def _log_weights(log_w) -> torch.Tensor:
    if not torch.is_tensor(log_w) or log_w.dim() != 1 or log_w.numel() < 2:
        shape = tuple(log_w.shape) if torch.is_tensor(log_w) else type(log_w).__name__
        raise ValueError(f"log_weights must be a 1-D tensor of at least 2 draws, got {shape}")
    if bool(torch.isnan(log_w).any()) or bool((log_w == math.inf).any()):
        bad = log_w[torch.isnan(log_w) | (log_w == math.inf)][0].item()
        raise ValueError(f"log_weights must be finite or -inf, got {bad}")
    if bool((log_w == -math.inf).all()):
        raise ValueError("log_weights are all -inf: every draw has zero weight")
    return log_w


def normalised_weights(log_w: torch.Tensor) -> torch.Tensor:
    """w~_m = softmax(log w)_m: (M,), summing to 1."""
    return torch.softmax(_log_weights(log_w), dim=0)


def effective_sample_size(log_w: torch.Tensor) -> float:
    """Kong's ESS (sum w)^2 / sum w^2 = 1 / sum w~^2, in [1, M]."""
    w = normalised_weights(log_w)
    return 1.0 / w.square().sum().item()


def snis_mean(log_w: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F^, se(F^)), each of f's trailing shape: the SNIS estimate of E_p[f] and its
    delta-method standard error (module docstring). f: (M, ...) values at the draws."""
    w = normalised_weights(log_w)
    if not torch.is_tensor(f) or f.shape[:1] != w.shape:
        shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
        raise ValueError(f"f must be a tensor with {w.shape[0]} rows (one per draw), got {shape}")
    w = w.to(f.dtype).reshape(-1, *([1] * (f.dim() - 1)))
    mean = (w * f).sum(0)
    se = (w.square() * (f - mean).square()).sum(0).sqrt()
    return mean, se


class LogNormaliser(NamedTuple):
    """log Z^ (the log of the mean importance weight), its delta-method standard error, and
    the ESS of the weights."""

    value: float
    se: float
    ess: float


def log_normaliser(log_w: torch.Tensor) -> LogNormaliser:
    """log Z^ = logmeanexp(log w) with se(log Z^) = sd(w) / (mean(w) sqrt(M)) (module
    docstring); unbiased for Z (not for log Z: Jensen's bias is about -se^2 / 2)."""
    log_w = _log_weights(log_w).to(torch.float64)
    M = log_w.numel()
    value = (torch.logsumexp(log_w, dim=0) - math.log(M)).item()
    scaled = torch.exp(log_w - log_w.max())  # w / max w, in [0, 1]
    se = (scaled.std() / (scaled.mean() * math.sqrt(M))).item()
    return LogNormaliser(value, se, effective_sample_size(log_w))
