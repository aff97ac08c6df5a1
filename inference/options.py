"""Checks of the keyword options every Pyro ELBO takes, shared by the estimator registry
(:func:`inference.estimators.get_elbo`) and :class:`inference.stl.StickingTheLanding`."""

from __future__ import annotations

import math

__all__ = ["check_elbo_options"]


def check_elbo_options(kwargs: dict) -> None:
    """Refuse ``num_particles`` and ``max_plate_nesting`` values Pyro would take and fail on
    later. Pyro accepts ``num_particles=0`` (then every loss is 0.0 and every gradient None) or a
    float, and fails much later; refuse them here, naming the option."""
    n = kwargs.get("num_particles", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_particles must be an integer >= 1, got {n!r}")
    depth = kwargs.get("max_plate_nesting", math.inf)
    if depth != math.inf and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"max_plate_nesting must be an integer >= 0, got {depth!r}")
