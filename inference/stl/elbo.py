r"""The path-derivative estimator as a Pyro ELBO: :class:`StickingTheLanding`.

Roeder, Wu & Duvenaud (2017), "Sticking the Landing: Simple, Lower-Variance Gradient Estimators
for Variational Inference", Eq. 5. Loss = -ELBO; the value is the base estimator's
(``Trace_ELBO`` or ``TraceEnum_ELBO``) at the same seed, the gradient is the path derivative::

    grad_phi [log p(x, z) - log q_{stop(phi)}(z)],   z = t(eps, phi)

built by :func:`inference.stl.guide.path_derivative_guide`.
"""

from __future__ import annotations

from contextlib import contextmanager

import pyro.infer
import torch

from inference.options import check_elbo_options
from inference.stl.guide import path_derivative_guide

__all__ = ["StickingTheLanding"]


_STL_BASES = {"trace": pyro.infer.Trace_ELBO, "enum": pyro.infer.TraceEnum_ELBO}


@contextmanager
def _one_line_refusal():
    """Our refusal of a guide, as we wrote it: Pyro's trace appends the trace shapes of every
    site (tens of lines) to an error raised inside the guide, which buries the one line."""
    try:
        yield
    except ValueError as err:
        text = str(err)
        if not text.startswith("estimator 'stl'"):
            raise
        raise ValueError(text.splitlines()[0]) from None


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
        check_elbo_options(kwargs)
        super().__init__(**kwargs)
        self.base_name = base
        self.base = _STL_BASES[base](**kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        """One (model trace, guide trace) pair of the base, with the path-derivative guide
        (Pyro's abstract hook; the losses below go through the base's own)."""
        with _one_line_refusal():
            return self.base._get_trace(model, path_derivative_guide(guide), args, kwargs)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """-ELBO estimate (a float): the base estimator's, which STL's value equals exactly."""
        return self.base.loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """-ELBO estimate whose gradient is the path-derivative gradient."""
        with _one_line_refusal():
            return self.base.differentiable_loss(
                model, path_derivative_guide(guide), *args, **kwargs
            )

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """As :meth:`loss`, and accumulates the path-derivative gradient into the params."""
        with _one_line_refusal():
            return self.base.loss_and_grads(model, path_derivative_guide(guide), *args, **kwargs)
