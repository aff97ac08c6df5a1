"""Each estimator's loss as a traceable pair: the -ELBO value and its surrogate gradient in one
tensor (``value.detach() + (surrogate - surrogate.detach())``, as Pyro's ``Trace_ELBO`` builds
it), computed without turning any tensor into a Python float, so that ``torch.jit.trace`` and
``make_fx`` can record it. Covered: Pyro's ``Trace_ELBO``, ``TraceMeanField_ELBO``,
``TraceEnum_ELBO`` (exact classes) and :class:`inference.stl.StickingTheLanding` on either base.
"""

from __future__ import annotations

import pyro
import pyro.infer
import torch
from pyro.infer.trace_elbo import _compute_log_r
from pyro.infer.util import is_identically_zero

from inference.stl import StickingTheLanding, path_derivative_guide

__all__ = ["compiled_kind", "loss_pair"]


def _trace_pair(elbo: pyro.infer.Trace_ELBO, model, guide, args, kwargs) -> torch.Tensor:
    """``Trace_ELBO``'s -ELBO estimate with its surrogate gradient, without ``.item()``:
    loss = -(1/P) sum_p [log p(x, z_p) - log q(z_p)]; surrogate adds, for each non-reparameterised
    guide site, the score-function term (downstream cost) * log q (Pyro's ``_compute_log_r``)
    and uses the entropy term for reparameterised ones (as ``Trace_ELBO``)."""
    loss, surrogate = 0.0, 0.0
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        value, surrogate_value, log_r = 0.0, 0.0, None
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                value = value + site["log_prob_sum"]
                surrogate_value = surrogate_value + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] != "sample":
                continue
            _, score_function_term, entropy_term = site["score_parts"]
            value = value - site["log_prob_sum"]
            if not is_identically_zero(entropy_term):
                surrogate_value = surrogate_value - entropy_term.sum()
            if not is_identically_zero(score_function_term):
                if log_r is None:
                    log_r = _compute_log_r(model_trace, guide_trace)
                cost = log_r.sum_to(site["cond_indep_stack"])
                surrogate_value = surrogate_value + (cost * score_function_term).sum()
        loss = loss - value / elbo.num_particles
        surrogate = surrogate - surrogate_value / elbo.num_particles
    return loss.detach() + (surrogate - surrogate.detach())


def _meanfield_pair(elbo: pyro.infer.TraceMeanField_ELBO, model, guide, args, kwargs):
    """``TraceMeanField_ELBO``'s loss: its particle loss detaches the value under tracing."""
    surrogate = 0.0
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        _, particle = elbo._differentiable_loss_particle(model_trace, guide_trace)
        surrogate = surrogate + particle / elbo.num_particles
    return surrogate


def compiled_kind(estimator) -> str | None:
    """Which compiled form ``estimator`` has: exact Pyro classes only (a subclass, e.g. Pyro's
    own JIT ELBOs or TraceTailAdaptive_ELBO, computes something else or traces itself)."""
    if isinstance(estimator, StickingTheLanding):
        return "stl"
    return {
        pyro.infer.Trace_ELBO: "trace",
        pyro.infer.TraceMeanField_ELBO: "meanfield",
        pyro.infer.TraceEnum_ELBO: "enum",
    }.get(type(estimator))


def loss_pair(estimator, model, guide, args, kwargs) -> torch.Tensor:
    """The differentiable -ELBO of ``estimator`` (value-preserving surrogate), computed without
    Python floats, so that it can be traced."""
    kind = compiled_kind(estimator)
    if kind == "stl":
        return loss_pair(estimator.base, model, path_derivative_guide(guide), args, kwargs)
    if kind == "enum":
        return estimator.differentiable_loss(model, guide, *args, **kwargs)
    if kind == "meanfield":
        return _meanfield_pair(estimator, model, guide, args, kwargs)
    return _trace_pair(estimator, model, guide, args, kwargs)
