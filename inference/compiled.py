r"""Compiled estimators: the loss of any of our ELBOs traced once with ``torch.jit.trace`` and
replayed at every later step, so that Pyro's Python (effect handlers, traces, plates) runs once
per argument signature instead of once per step.

``CompiledELBO(estimator)`` (what ``get_elbo(name, jit=True)`` returns) is a Pyro ELBO: usable as
``loss=`` of :class:`pyro.infer.SVI` (Pyro's autoguides, param-store parameters) and as
``elbo(model, guide)`` -> ``nn.Module`` in :class:`inference.fit.SVIStep` (guides that are plain
``nn.Module``\ s). Loss = -ELBO; value and gradient are the estimator's own, computed from the
same random draws at the same seed (the traced graph calls the same random ops in the same order).

How one call works, for a new *signature* -- (model, guide, the shapes, dtypes and devices of the
tensor arguments, the values of the others, which must be hashable):

1. The loss runs eagerly, as the uncompiled estimator would. Its autograd graph gives the
   leaves it depends on: every trainable tensor, whether a Pyro param (looked up by name at
   each later call, which also shows it to ``pyro.infer.SVI``) or an ``nn.Parameter`` of a
   plain module. If that call *created* parameters (an autoguide's first call, which may draw
   random numbers to initialise them), this step is the eager one, and the loss runs eagerly
   once more, from the state it left, as the reference (the probe) for steps 2-3.
2. From the probe's starting state, ``torch.jit.trace`` records the loss as a graph whose inputs
   are those leaves and the tensor arguments (validation off: the eager call did it). A
   ``TracerWarning`` that a tensor became a Python value (``bool``, ``float``, index) *in the
   user's code* (any file outside Pyro and torch, whose own conversions read shapes, which key
   the trace, or check for NaN) means control flow or a constant that depends on data, which a
   trace would freeze: the signature then stays uncompiled, with one ``UserWarning`` naming the
   file and line (Pyro's ``JitTrace_ELBO`` would use the frozen trace).
   ``ignore_jit_warnings=True`` trusts the trace anyway, as Pyro's option of that name does.
   Constants made from Python numbers (``torch.tensor(0.5)``) are allowed: they are the same
   at every call.
3. From the same state again, the traced graph runs; its loss and gradient are compared with
   the probe's, to ``sqrt(eps)`` of the dtype relative to the largest of them (1.5e-8 in
   float64, 3.5e-4 in float32; a frozen branch or constant is off by O(1)). A mismatch also
   keeps the signature uncompiled, with a warning. Otherwise the traced result is this step's
   (unless step 1 created parameters), so every step of a run comes from the same graph and a
   resumed run repeats an uninterrupted one bit for bit. The generator is left where the eager
   call left it: the random stream is the eager estimator's.

With ``backend="inductor"``, the checked trace is then recorded again as an ATen graph and
compiled by TorchInductor (:mod:`inference.inductor`), from the same random state; its loss and
gradient are compared with the probe's in the same way. Where Inductor fails or disagrees, one
warning says why (also kept in ``not_inductor``) and the TorchScript trace is used.

Later calls with that signature run the graph only, with TorchScript's optimising executor
off (``torch.jit.optimized_execution(False)``): after a few calls it swaps in specialised graphs
that differentiate some ops by TorchScript's own formulas, whose rounding differs from
autograd's, so a graph's early and late calls would differ in the last bits and a run resumed
from a checkpoint (a fresh trace) would not repeat the uninterrupted run. Measured cost: 2.9
against 2.5 ms per step of the earthquake model at N = 1,000 (eager: 7.3 ms).

Not covered (as for Pyro's JIT ELBOs): models whose *structure* changes from call to call in
ways no tensor-to-Python conversion shows (e.g. a Python random choice: the check of step 3
catches it when the first two calls differ), global tensors changed in place after the first
call, and parameters created after it.

Where it is slower: Pyro's enumeration code, when traced, masks every cost term by prob > 0
(it cannot test ``mask.all()`` in a trace), which the eager code skips; at N x K = 10^6 that
masking is a third of the step, and the compiled step is slower (see benchmarks/svi_step.py).

The loss a trace needs is a *pair* (value, surrogate) with the value not turned into a Python
float: :func:`_loss_pair` builds it from each estimator's own pieces (``Trace_ELBO``'s score
function terms via Pyro's ``_compute_log_r``; ``TraceMeanField_ELBO``'s particle loss, which
detaches under tracing; ``TraceEnum_ELBO``'s dice ELBO, already traceable; STL on either base).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.infer
import torch
from pyro.infer.trace_elbo import _compute_log_r
from pyro.infer.util import is_identically_zero

from inference.estimators import StickingTheLanding
from inference.stl import path_derivative_guide

__all__ = ["BACKENDS", "CompiledELBO"]

# What compiles the traced loss: TorchScript's interpreter (one kernel per op, compiles in
# about 0.1 s), or TorchInductor (fused C++ loops, compiles in 1-14 s; inference/inductor.py).
BACKENDS = ("torchscript", "inductor")

# TracerWarnings that do not mean a frozen data dependence: tensors built from Python numbers
# are the same at every call (torch's own message says they can be ignored when so).
_HARMLESS = ("are registered as constants in the trace",)
# Inside Pyro and torch a tensor becomes a Python value only to read a shape (a trace is made
# per shape) or to warn of a NaN (Pyro's warn_if_nan); Pyro's own JIT ELBOs rely on this.
# Conversions in any other file -- the user's model and guide -- are the ones that can freeze.
_LIBRARIES = tuple(os.path.dirname(m.__file__) + os.sep for m in (pyro, torch))


class _Signature(NamedTuple):
    """What a compiled graph was traced for: model, guide and the argument structure."""

    model: int
    guide: int
    args: tuple
    kwargs: tuple


class _Graph(NamedTuple):
    """A traced loss: ``fn(*leaves, *tensor_args)`` -> -ELBO (value-preserving surrogate).
    ``names[i]`` is the Pyro param name of leaf i (looked up afresh at each call), or None for a
    tensor held directly (``tensors[i]``, e.g. an ``nn.Parameter`` of a plain module)."""

    fn: Callable[..., torch.Tensor]  # a torch.jit.ScriptFunction, or an Inductor-compiled graph
    names: tuple
    tensors: tuple


def _describe(value) -> object:
    """A hashable stand-in for one argument: tensors by (shape, dtype, device, requires_grad),
    anything else by its value (which must be hashable: a trace freezes it)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device, value.requires_grad)
    hash(value)  # TypeError for a list, dict, ...: the caller falls back to the eager loss
    return value


def _signature(model, guide, args, kwargs) -> _Signature:
    items = sorted(kwargs.items())
    return _Signature(
        id(model),
        id(guide),
        tuple(_describe(a) for a in args),
        tuple((k, _describe(v)) for k, v in items),
    )


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


def _kind(estimator) -> str | None:
    """Which compiled form ``estimator`` has: exact Pyro classes only (a subclass, e.g. Pyro's
    own JIT ELBOs or TraceTailAdaptive_ELBO, computes something else or traces itself)."""
    if isinstance(estimator, StickingTheLanding):
        return "stl"
    return {
        pyro.infer.Trace_ELBO: "trace",
        pyro.infer.TraceMeanField_ELBO: "meanfield",
        pyro.infer.TraceEnum_ELBO: "enum",
    }.get(type(estimator))


def _loss_pair(estimator, model, guide, args, kwargs) -> torch.Tensor:
    """The differentiable -ELBO of ``estimator`` (value-preserving surrogate), computed without
    Python floats, so that it can be traced."""
    kind = _kind(estimator)
    if kind == "stl":
        return _loss_pair(estimator.base, model, path_derivative_guide(guide), args, kwargs)
    if kind == "enum":
        return estimator.differentiable_loss(model, guide, *args, **kwargs)
    if kind == "meanfield":
        return _meanfield_pair(estimator, model, guide, args, kwargs)
    return _trace_pair(estimator, model, guide, args, kwargs)


def _leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors that require grad behind ``loss`` (its parameters), in graph order."""
    found, seen, stack = [], set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if variable is not None:
            found.append(variable)
        stack.extend(n for n, _ in node.next_functions)
    return found


def _rng_devices(tensors) -> list:
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def _max_abs(tensors) -> float:
    return max((t.abs().max().item() for t in tensors if t is not None and t.numel()), default=0)


class CompiledELBO(pyro.infer.ELBO):
    """``estimator``'s loss, traced once per argument signature and replayed (see module doc).

    Args:
        estimator: a ``Trace_ELBO``, ``TraceMeanField_ELBO``, ``TraceEnum_ELBO`` or
            :class:`~inference.estimators.StickingTheLanding` (on either base).
        backend: what runs the trace: ``"torchscript"`` (TorchScript's interpreter, compiled in
            about 0.1 s) or ``"inductor"`` (TorchInductor's fused C++ loops,
            :mod:`inference.inductor`: 2.7x faster earthquake steps at N = 1,000, 7-14 s to
            compile, 1-5 s from its warm cache; needs a C++ compiler). The Inductor graph is
            built from the checked TorchScript trace and checked against the eager loss in the
            same way; where it fails, the TorchScript trace runs.
        ignore_jit_warnings: use the trace even where the tracer warned that a tensor became a
            Python value (only if you know the value cannot change between calls).

    Attributes:
        compile_seconds: wall-clock seconds spent compiling so far (the eager run, the trace,
            Inductor's compile where asked, and the checks of each signature), kept apart from
            the steps.
        uncompiled: for each signature left uncompiled, the reason (also warned once).
        not_inductor: with ``backend="inductor"``, each signature that runs the TorchScript
            trace instead, and why (also warned once).

    Raises:
        ValueError: for an estimator with no compiled form; for an unknown backend.
    """

    def __init__(
        self,
        estimator: pyro.infer.ELBO,
        *,
        backend: str = "torchscript",
        ignore_jit_warnings: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if _kind(estimator) is None:
            raise ValueError(
                f"estimator {type(estimator).__name__} has no compiled form; compiled are "
                "Trace_ELBO, TraceMeanField_ELBO, TraceEnum_ELBO and StickingTheLanding (on "
                "either base)"
            )
        super().__init__(
            num_particles=estimator.num_particles,
            max_plate_nesting=estimator.max_plate_nesting,
            vectorize_particles=estimator.vectorize_particles,
        )
        self.estimator = estimator
        self.backend = backend
        self.ignore_jit_warnings = bool(ignore_jit_warnings)
        self.compile_seconds = 0.0
        self.uncompiled: dict[_Signature, str] = {}
        self.not_inductor: dict[_Signature, str] = {}
        self._graphs: dict[_Signature, _Graph] = {}

    # -- the ELBO interface -------------------------------------------------------------------
    def _get_trace(self, model, guide, args, kwargs):
        """One (model trace, guide trace) pair: the estimator's (Pyro's abstract hook)."""
        return self.estimator._get_trace(model, guide, args, kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """-ELBO estimate whose gradient is the estimator's, from the compiled graph."""
        if not torch.is_grad_enabled():  # nothing to differentiate: the eager loss is as fast
            return _loss_pair(self.estimator, model, guide, args, kwargs)
        try:
            signature = _signature(model, guide, args, kwargs)
        except TypeError as err:
            self._refuse(None, f"an argument that is not a tensor is not hashable ({err})")
            return _loss_pair(self.estimator, model, guide, args, kwargs)
        if signature in self.uncompiled:
            return _loss_pair(self.estimator, model, guide, args, kwargs)
        graph = self._graphs.get(signature)
        if graph is None:
            return self._compile(signature, model, guide, args, kwargs)
        with torch.jit.optimized_execution(False):  # (no effect on an Inductor graph)
            return graph.fn(*self._inputs(graph), *_tensor_args(args, kwargs))

    def loss(self, model, guide, *args, **kwargs) -> float:
        """-ELBO estimate as a float (no gradient: the eager estimator's)."""
        return self.estimator.loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """As :meth:`loss`, from the compiled graph, and accumulates the gradient."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()

    # -- compiling ----------------------------------------------------------------------------
    def _inputs(self, graph: _Graph) -> list[torch.Tensor]:
        return [
            t if name is None else pyro.param(name).unconstrained()
            for name, t in zip(graph.names, graph.tensors)
        ]

    def _refuse(self, signature, reason: str) -> None:
        """Keep ``signature`` uncompiled (its later calls run the estimator), warning once."""
        if signature is not None:
            self.uncompiled[signature] = reason
        warnings.warn(
            f"the loss is not compiled: {reason}. The uncompiled estimator is used (same "
            "values, slower steps)",
            stacklevel=4,
        )

    def _compile(self, signature, model, guide, args, kwargs) -> torch.Tensor:
        """Trace, check and return this step's loss (see the module doc, steps 1-4)."""
        start = time.perf_counter()
        tensors = _tensor_args(args, kwargs)
        devices = _rng_devices(tensors)
        before = _parameter_ids(model, guide)
        state = _rng_state(devices)
        eager = _loss_pair(self.estimator, model, guide, args, kwargs)
        if not eager.requires_grad:
            self.compile_seconds += time.perf_counter() - start
            return eager
        after = _rng_state(devices)  # where the eager step leaves the generator
        created = _parameter_ids(model, guide) != before
        if created:  # an autoguide's first call: this step is the eager one; probe afresh
            state, probe = after, _loss_pair(self.estimator, model, guide, args, kwargs)
        else:  # the eager step is the probe, and the traced graph gives this step
            probe = eager
        leaves = _leaves(probe)
        store = {id(t): name for name, t in pyro.get_param_store().named_parameters()}
        names = tuple(store.get(id(t)) for t in leaves)
        n = len(leaves)

        def traced(*inputs):
            rebuilt_args, rebuilt_kwargs = _with_tensors(args, kwargs, inputs[n:])
            return _loss_pair(self.estimator, model, guide, rebuilt_args, rebuilt_kwargs)

        _set_rng_state(devices, state)
        with warnings.catch_warnings(record=True) as caught, pyro.validation_enabled(False):
            warnings.simplefilter("always", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace. is deprecated")
            fn = torch.jit.trace(traced, (*leaves, *tensors), check_trace=False)
        frozen = [
            w
            for w in caught
            if issubclass(w.category, torch.jit.TracerWarning)
            and not any(h in str(w.message) for h in _HARMLESS)
            and not w.filename.startswith(_LIBRARIES)
        ]
        reason, compiled = "", None
        if frozen and not self.ignore_jit_warnings:
            w = frozen[0]
            reason = (
                f"tracing it turned a tensor into a Python value at {w.filename}:{w.lineno} "
                f"({str(w.message).split('.')[0]}), so the trace could freeze a data-dependent "
                "branch or constant; pass ignore_jit_warnings=True if it cannot change"
            )
        else:
            _set_rng_state(devices, state)
            with torch.jit.optimized_execution(False):
                compiled = fn(*leaves, *tensors)
            mismatch = _mismatch(probe, compiled, leaves)
            if mismatch:
                reason = f"the traced loss disagrees with the eager one: {mismatch}"
        if not reason and self.backend == "inductor":
            fn, compiled = self._inductor(signature, traced, fn, compiled, state, devices, probe,
                                          leaves, tensors)  # fmt: skip
        _set_rng_state(devices, after)  # the traced run drew as many numbers as the eager one
        self.compile_seconds += time.perf_counter() - start
        if reason:
            self._refuse(signature, reason)
            return eager
        self._graphs[signature] = _Graph(fn, names, tuple(leaves))
        return eager if created else compiled

    def _inductor(self, signature, traced, script, scripted, state, devices, probe, leaves,
                  tensors):  # fmt: skip
        """The checked TorchScript trace ``script`` (whose result was ``scripted``) recompiled
        by Inductor (:mod:`inference.inductor`) from the same random state and checked against
        the probe in the same way; where it fails or disagrees, one warning and ``script``."""
        from inference.inductor import compile_loss

        try:
            _set_rng_state(devices, state)
            with pyro.validation_enabled(False):
                fn = compile_loss(traced, [*leaves, *tensors])
            _set_rng_state(devices, state)
            compiled = fn(*leaves, *tensors)
            mismatch = _mismatch(probe, compiled, leaves)
        except Exception as err:  # noqa: BLE001 -- any failure of the compiler: keep the trace
            mismatch = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if not mismatch:
            return fn, compiled
        warnings.warn(
            f"Inductor could not compile the loss ({mismatch}); the TorchScript trace is used "
            "(same values, slower steps)",
            stacklevel=5,
        )
        self.not_inductor[signature] = mismatch
        return script, scripted


def _parameter_ids(model, guide) -> tuple:
    """Which parameters exist: Pyro's param store and those of ``model`` and ``guide`` where
    they are modules (a change means the call just created some, as an autoguide's first)."""
    modules = [m for m in (model, guide) if isinstance(m, torch.nn.Module)]
    return (
        tuple(sorted(pyro.get_param_store().keys())),
        tuple(id(p) for m in modules for p in m.parameters()),
    )


def _mismatch(eager: torch.Tensor, compiled: torch.Tensor, leaves) -> str:
    """'' if the two losses and their gradients agree to sqrt(eps) of the dtype, relative to
    the largest magnitude involved; else what differs and by how much."""
    tol = math.sqrt(torch.finfo(eager.dtype).eps)
    grads_e = torch.autograd.grad(eager, leaves, retain_graph=True, allow_unused=True)
    grads_c = torch.autograd.grad(compiled, leaves, retain_graph=True, allow_unused=True)
    diff = abs(eager.item() - compiled.item())
    if not diff <= tol * max(1.0, abs(eager.item())):
        return f"loss {compiled.item()!r} against {eager.item()!r}"
    scale = max(1.0, _max_abs(grads_e))
    for ge, gc in zip(grads_e, grads_c):
        if (ge is None) != (gc is None):
            return "a parameter's gradient is missing from one of them"
        if ge is not None and not (ge - gc).abs().max().item() <= tol * scale:
            return f"gradient off by {(ge - gc).abs().max().item():.3g} (scale {scale:.3g})"
    return ""


def _tensor_args(args, kwargs) -> list[torch.Tensor]:
    """The tensor arguments, positional first, then keyword ones by sorted name."""
    return [a for a in args if isinstance(a, torch.Tensor)] + [
        v for _, v in sorted(kwargs.items()) if isinstance(v, torch.Tensor)
    ]


def _with_tensors(args, kwargs, tensors):
    """``args, kwargs`` with their tensors replaced, in :func:`_tensor_args`'s order."""
    it = iter(tensors)
    new_args = tuple(next(it) if isinstance(a, torch.Tensor) else a for a in args)
    new_kwargs = dict(kwargs)
    for key, value in sorted(kwargs.items()):
        if isinstance(value, torch.Tensor):
            new_kwargs[key] = next(it)
    return new_args, new_kwargs


def _rng_state(devices):
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(devices, state) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for d, s in zip(devices, cuda):
        torch.cuda.set_rng_state(s, d)
