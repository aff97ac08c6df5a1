"""Argument checks shared by the closed forms: one ValueError naming the argument, never a
TypeError, before any work."""

from __future__ import annotations

import math

import torch

__all__ = ["number", "nonnegative", "points", "positive"]


def number(name: str, value, what: str) -> float:
    """``value`` as a float (a number, 0-dim tensor or numpy scalar; not a bool or a string), or
    ``ValueError("{name} must be {what}, got {value!r}")``."""
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be {what}, got {value!r}") from None


def positive(name: str, value) -> float:
    """``value`` as a finite float > 0, or one ValueError naming ``name``."""
    x = number(name, value, "a finite number > 0")
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


def nonnegative(name: str, value) -> float:
    """``value`` as a finite float >= 0, or one ValueError naming ``name``."""
    x = number(name, value, "a finite number >= 0")
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def points(name: str, X, width: int | None = None) -> torch.Tensor:
    """``X`` as a floating (N, d) tensor of finite values, N >= 1, with d == ``width`` when it
    is given (else any d >= 1); integer tensors are converted to the default dtype. Otherwise
    one ValueError naming ``name`` and the shape or the first non-finite value and its index."""
    shape = "(N, d)" if width is None else f"(N, {width})"
    if not torch.is_tensor(X):
        raise ValueError(f"{name} must be a torch tensor of shape {shape}, got {type(X).__name__}")
    wrong_width = X.dim() == 2 and width is not None and X.shape[1] != width
    if X.dim() != 2 or X.shape[0] < 1 or X.shape[1] < 1 or wrong_width:
        rule = "N, d >= 1" if width is None else "N >= 1"
        raise ValueError(f"{name} must have shape {shape} with {rule}, got {tuple(X.shape)}")
    if not X.is_floating_point():
        X = X.to(torch.get_default_dtype())
    if not bool(torch.isfinite(X).all()):
        bad = (~torch.isfinite(X)).nonzero()[0].tolist()
        raise ValueError(f"{name} must be finite, got {X[bad[0], bad[1]].item()} at {bad}")
    return X
