"""Checks of the keyword options every Pyro ELBO takes, shared by the estimator registry
(:func:`inference.estimators.get_elbo`) and :class:`inference.stl.StickingTheLanding`."""

from __future__ import annotations

import inspect
import math

import pyro.infer

__all__ = ["check_elbo_options"]


def check_elbo_options(kwargs: dict) -> None:
    """Refuse ``num_particles`` and ``max_plate_nesting`` values Pyro would take and fail on
    later. Pyro accepts ``num_particles=0`` (then every loss is 0.0 and every gradient None) or a
    float, and fails much later; refuse them here, naming the option. An option Pyro's ELBO
    does not take is refused with the list of those it does (Python's words were a TypeError
    about ``__init__``), and a yes/no option must be a bool (``"yes"`` was taken as true)."""
    unknown = sorted(set(kwargs) - set(_ELBO_OPTIONS))
    if unknown:
        raise ValueError(f"unknown ELBO option(s) {unknown}; the options are {_ELBO_OPTIONS}")
    for name in _YES_NO:
        if name in kwargs and not isinstance(kwargs[name], bool):
            raise ValueError(f"{name} must be True or False, got {kwargs[name]!r}")
    n = kwargs.get("num_particles", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_particles must be an integer >= 1, got {n!r}")
    depth = kwargs.get("max_plate_nesting", math.inf)
    if depth != math.inf and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"max_plate_nesting must be an integer >= 0, got {depth!r}")


#: The keyword options of Pyro's ELBO (every estimator here passes them on to it).
_ELBO_OPTIONS = [n for n in inspect.signature(pyro.infer.ELBO.__init__).parameters if n != "self"]
_YES_NO = ("vectorize_particles", "strict_enumeration_warning", "ignore_jit_warnings")
