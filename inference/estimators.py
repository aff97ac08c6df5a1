r"""Gradient estimators by name: one registry for every SVI fit in the project.

``get_elbo(name, **kwargs)`` returns a Pyro ELBO object usable as ``loss=`` in
:class:`pyro.infer.SVI`, or as ``elbo(model, guide)`` -> ``torch.nn.Module`` in
:func:`inference.fit.fit_svi`. Loss = -ELBO throughout.

Names:
    ``trace``      Pyro ``Trace_ELBO``: reparameterised where possible, score function otherwise
                   (Ranganath, Gerrish & Blei 2014; Kingma & Welling 2014).
    ``meanfield``  Pyro ``TraceMeanField_ELBO``: analytic KL(q || p) where registered
                   (e.g. Normal-Normal, Gamma-Gamma), Monte Carlo otherwise.
    ``enum``       Pyro ``TraceEnum_ELBO``: sums out discrete sites marked for enumeration
                   exactly (needs ``max_plate_nesting``).
    ``stl``        :class:`StickingTheLanding`: the path-derivative estimator of Roeder, Wu &
                   Duvenaud (2017) on top of ``trace`` (default) or ``enum`` (``base="enum"``).

The path-derivative ("sticking the landing") estimator keeps, of the total derivative of
log p(x, z) - log q_phi(z) at z = t(eps, phi), the path term only and drops the score term
-d/dphi log q_phi(z)|_{z fixed} (mean zero, variance not). It is unbiased, and when q equals the
exact posterior every gradient draw is exactly zero. Far from the posterior it can have *more*
variance than ``Trace_ELBO`` (the two terms can partly cancel); see ``vilab gradvar``. How it is
built for any guide (hand-written, autoguides, messenger autoguides), and which guides it
refuses: :mod:`inference.stl`.

Only reparameterisable, non-enumerated guide sites are changed; others keep their score-function
term (``Trace_ELBO``) or their exact enumeration (``TraceEnum_ELBO``). The reported loss is the
ordinary -ELBO estimate, identical to the base estimator's at the same seed; only the gradient
differs.
"""

from __future__ import annotations

import math

import pyro.infer
import torch

from inference.stl import path_derivative_guide

__all__ = ["ESTIMATORS", "StickingTheLanding", "get_elbo"]


_STL_BASES = {"trace": pyro.infer.Trace_ELBO, "enum": pyro.infer.TraceEnum_ELBO}


class StickingTheLanding(pyro.infer.ELBO):
    """The path-derivative estimator (Roeder, Wu & Duvenaud 2017), as a Pyro ELBO.

    Usable as ``SVI(model, guide, optim, loss=StickingTheLanding())`` and as
    ``StickingTheLanding()(model, guide)`` -> ``nn.Module``. Loss = -ELBO; its value equals
    ``base``'s estimate, its gradient drops the score term of every reparameterised guide site.

    Args:
        base: ``"trace"`` (``Trace_ELBO``) or ``"enum"`` (``TraceEnum_ELBO``, for guides with
            enumerated discrete sites, e.g. the earthquake guide).
        **kwargs: Pyro ELBO options (``num_particles``, ``vectorize_particles``,
            ``max_plate_nesting``, ...), passed to the base estimator.

    Raises:
        ValueError: for ``base="meanfield"``: ``TraceMeanField_ELBO`` replaces the Monte Carlo
            log q - log p by an analytic KL, so there is no sampled log q whose parameters could
            be stopped -- the analytic KL's gradient is already exact. Use ``meanfield`` by
            itself, or ``stl`` (Trace_ELBO base). Also for any other unknown base.
    """

    def __init__(self, base: str = "trace", **kwargs) -> None:
        if base == "meanfield":
            raise ValueError(
                "estimator 'stl' cannot use base 'meanfield': TraceMeanField_ELBO computes "
                "KL(q || p) analytically, so there is no sampled log q(z) whose score term STL "
                "could drop (the analytic KL's gradient is already exact). Use 'meanfield' on "
                "its own, or 'stl' with base 'trace' (or 'enum' for enumerated guides)"
            )
        if base not in _STL_BASES:
            raise ValueError(f"stl base must be one of {sorted(_STL_BASES)}, got {base!r}")
        _check_elbo_options(kwargs)
        super().__init__(**kwargs)
        self.base_name = base
        self.base = _STL_BASES[base](**kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        """One (model trace, guide trace) pair of the base, with the path-derivative guide
        (Pyro's abstract hook; the losses below go through the base's own)."""
        return self.base._get_trace(model, path_derivative_guide(guide), args, kwargs)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """-ELBO estimate (a float): the base estimator's, which STL's value equals exactly."""
        return self.base.loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """-ELBO estimate whose gradient is the path-derivative gradient."""
        return self.base.differentiable_loss(model, path_derivative_guide(guide), *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """As :meth:`loss`, and accumulates the path-derivative gradient into the params."""
        return self.base.loss_and_grads(model, path_derivative_guide(guide), *args, **kwargs)


ESTIMATORS = {
    "trace": pyro.infer.Trace_ELBO,
    "meanfield": pyro.infer.TraceMeanField_ELBO,
    "enum": pyro.infer.TraceEnum_ELBO,
    "stl": StickingTheLanding,
}


def get_elbo(name: str, *, jit: bool | str = False, **kwargs) -> pyro.infer.ELBO:
    """Build the estimator called ``name`` with Pyro ELBO keyword arguments
    (``num_particles``, ``vectorize_particles``, ``max_plate_nesting``, ...; for ``stl`` also
    ``base="trace"|"enum"``).

    With ``jit=True`` (or ``"torchscript"``) the estimator is wrapped in
    :class:`inference.compiled.CompiledELBO`: its loss is traced once per argument signature
    with ``torch.jit.trace`` and replayed, with the same values and gradients at the same seed
    (``ignore_jit_warnings=True`` is passed to it, not to the estimator). ``jit="inductor"``
    compiles that trace further with TorchInductor (fused loops; slower to compile). A model
    that cannot be traced keeps the uncompiled loss, with a warning.

    Raises:
        ValueError: for an unknown name, listing the known ones; for impossible combinations
            (``stl`` on ``meanfield``), saying what to use instead; for a ``jit`` that is not
            a bool, ``"torchscript"`` or ``"inductor"``.
    """
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {name!r}") from None
    if "base" in kwargs and name != "stl":
        raise ValueError(f"'base' is an option of estimator 'stl' only, not of {name!r}")
    if not (isinstance(jit, bool) or jit in ("torchscript", "inductor")):
        raise ValueError(f"jit must be True, False, 'torchscript' or 'inductor', got {jit!r}")
    _check_elbo_options(kwargs)
    if not jit:
        return cls(**kwargs)
    from inference.compiled import CompiledELBO  # it builds on this module's estimators

    ignore = kwargs.pop("ignore_jit_warnings", False)
    backend = "torchscript" if jit is True else jit
    return CompiledELBO(cls(**kwargs), backend=backend, ignore_jit_warnings=ignore)


def _check_elbo_options(kwargs: dict) -> None:
    """Pyro accepts ``num_particles=0`` (then every loss is 0.0 and every gradient None) or a
    float, and fails much later; refuse them here, naming the option."""
    n = kwargs.get("num_particles", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_particles must be an integer >= 1, got {n!r}")
    depth = kwargs.get("max_plate_nesting", math.inf)
    if depth != math.inf and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"max_plate_nesting must be an integer >= 0, got {depth!r}")
