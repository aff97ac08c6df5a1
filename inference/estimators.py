r"""Gradient estimators by name: the one registry every SVI fit in the project uses.

``get_elbo(name, **kwargs)`` returns a Pyro ELBO usable as ``loss=`` in :class:`pyro.infer.SVI`,
or as ``elbo(model, guide)`` -> ``torch.nn.Module`` in :func:`inference.svi.fit_svi`.
Loss = -ELBO throughout. Names:

    trace      Pyro ``Trace_ELBO``: reparameterised where possible, score function otherwise
               (Ranganath, Gerrish & Blei 2014; Kingma & Welling 2014).
    meanfield  Pyro ``TraceMeanField_ELBO``: analytic KL(q || p) where registered, Monte Carlo
               otherwise.
    enum       Pyro ``TraceEnum_ELBO``: discrete sites marked for enumeration summed out exactly
               (needs ``max_plate_nesting``).
    stl        :class:`inference.stl.StickingTheLanding`: the path-derivative estimator of
               Roeder, Wu & Duvenaud (2017, Eq. 5) on ``trace`` (default) or ``enum``.

``jit=`` wraps any of them in :class:`inference.jit.CompiledELBO`. This module sits above both
rooms (``stl`` <- ``jit`` <- ``estimators``): nothing below imports it.
"""

from __future__ import annotations

import pyro.infer

from inference.jit import BACKENDS, CompiledELBO
from inference.options import check_elbo_options
from inference.stl import StickingTheLanding

__all__ = ["ESTIMATORS", "get_elbo"]


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
    :class:`inference.jit.CompiledELBO`: its loss is traced once per argument signature
    with ``torch.jit.trace`` and replayed, with the same values and gradients at the same seed
    (``ignore_jit_warnings=True`` is passed to it, not to the estimator). ``jit="inductor"``
    compiles that trace further with TorchInductor (fused loops; slower to compile).
    ``jit="step"`` compiles the whole step -- loss, gradient and Adam -- as one Inductor call
    where :class:`inference.svi.SVIStep` or :func:`inference.svi.fit_svi` runs it (the
    TorchScript-traced loss elsewhere). A model that cannot be traced keeps the uncompiled loss,
    with a warning.

    Raises:
        ValueError: for an unknown name, listing the known ones; for impossible combinations
            (``stl`` on ``meanfield``), saying what to use instead; for a ``jit`` that is not
            a bool, ``"torchscript"``, ``"inductor"`` or ``"step"``; for an option Pyro's ELBO
            does not take, or a yes/no option that is not a bool.
    """
    try:
        cls = ESTIMATORS[name]
    except (KeyError, TypeError):  # TypeError: a name that is not hashable (a list)
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {name!r}") from None
    if "base" in kwargs and name != "stl":
        raise ValueError(f"'base' is an option of estimator 'stl' only, not of {name!r}")
    if not (isinstance(jit, bool) or (isinstance(jit, str) and jit in BACKENDS)):
        raise ValueError(
            f"jit must be True, False or one of {', '.join(map(repr, BACKENDS))}, got {jit!r}"
        )
    check_elbo_options({k: v for k, v in kwargs.items() if k != "base"})  # (stl's own option)
    if not jit:
        return cls(**kwargs)
    ignore = kwargs.pop("ignore_jit_warnings", False)
    backend = "torchscript" if jit is True else jit
    return CompiledELBO(cls(**kwargs), backend=backend, ignore_jit_warnings=ignore)
