"""Argument checks shared by the closed forms: one ValueError naming the argument, never a
TypeError, before any work."""

from __future__ import annotations

import math

__all__ = ["number", "nonnegative", "positive"]


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
