r"""Compiled estimators: :class:`CompiledELBO`, the loss of any of our ELBOs traced once per
argument signature with ``torch.jit.trace`` (optionally compiled further by TorchInductor) and
replayed at every later step, so that Pyro's Python runs once per signature, not once per step.

Loss = -ELBO; the value and gradient are the wrapped estimator's own, from the same random draws
at the same seed. A new signature is compiled in three steps: the eager loss runs (the probe);
the trace is recorded from the probe's starting state; the traced loss runs from that state
again and must match the probe (:func:`inference.jit.check.mismatch`). A tensor turned into a
Python value inside the user's code while tracing (a data-dependent branch a trace would freeze),
or a mismatch, keeps that signature uncompiled, with one ``UserWarning``. How and why, with the
measured costs: ``docs/guides/compiled-svi.md``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.infer
import torch

from inference.jit import check, inductor, replay
from inference.jit.pairs import compiled_kind, loss_pair
from inference.jit.step import CompiledStep

__all__ = ["BACKENDS", "CompiledELBO"]

# What compiles the traced loss: TorchScript's interpreter (one kernel per op), or TorchInductor
# (fused C++ loops, slower to compile; inference/jit/inductor.py); "step": the whole SVI step
# (loss, gradient, Adam) compiled by Inductor where inference.svi.SVIStep runs it
# (inference/jit/step.py), the TorchScript trace as a loss elsewhere.
BACKENDS = ("torchscript", "inductor", "step")

# TracerWarnings that do not mean a frozen data dependence: tensors built from Python numbers
# are the same at every call (torch's own message says they can be ignored when so).
_HARMLESS = ("are registered as constants in the trace",)
# Inside Pyro and torch a tensor becomes a Python value only to read a shape (a trace is made
# per shape) or to warn of a NaN (Pyro's warn_if_nan); Pyro's own JIT ELBOs rely on this.
# Conversions in any other file -- the user's model and guide -- are the ones that can freeze.
_LIBRARIES = tuple(os.path.dirname(m.__file__) + os.sep for m in (pyro, torch))


#: How the TorchScript interpreter words a KeyboardInterrupt raised in a Python callback
#: (an autograd function such as Pyro's ``safe_log``) that it wraps in a RuntimeError.
_INTERRUPTED = "KeyboardInterrupt: "


class _Graph(NamedTuple):
    """A traced loss: ``fn(*leaves, *tensor_args)`` -> -ELBO (value-preserving surrogate).
    ``names[i]`` is the Pyro param name of leaf i (looked up afresh at each call), or None for a
    tensor held directly (``tensors[i]``, e.g. an ``nn.Parameter`` of a plain module)."""

    fn: Callable[..., torch.Tensor]  # a torch.jit.ScriptFunction, or an Inductor-compiled graph
    names: tuple
    tensors: tuple


class CompiledELBO(pyro.infer.ELBO):
    """``estimator``'s loss, traced once per argument signature and replayed (see module doc).

    Args:
        estimator: a ``Trace_ELBO``, ``TraceMeanField_ELBO``, ``TraceEnum_ELBO`` or
            :class:`~inference.stl.StickingTheLanding` (on either base).
        backend: what runs the trace: ``"torchscript"`` (TorchScript's interpreter, one kernel
            per op) or ``"inductor"`` (TorchInductor's fused C++ loops,
            :mod:`inference.jit.inductor`; slower to compile, needs a C++ compiler). The
            Inductor graph is built from the checked TorchScript trace and checked against the
            eager loss in the same way; where it fails, the TorchScript trace runs. ``"step"``:
            the whole step -- loss, gradient and Adam's update -- compiled as one call by
            Inductor where :class:`inference.svi.SVIStep` (or :func:`~inference.svi.fit_svi`)
            runs it (:class:`inference.jit.step.CompiledStep`); as a loss anywhere else (e.g.
            ``pyro.infer.SVI``, whose optimiser is apart), the TorchScript trace.
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
        if compiled_kind(estimator) is None:
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
        self.uncompiled: dict[replay.Signature, str] = {}
        self.not_inductor: dict[replay.Signature, str] = {}
        self._graphs: dict[replay.Signature, _Graph] = {}

    def compiled_step(self, optimizer: torch.optim.Optimizer, eager_step) -> CompiledStep | None:
        """With ``backend="step"``, the whole step of ``optimizer`` on this loss compiled as
        one call (:class:`~inference.jit.step.CompiledStep`; ``eager_step(*args, **kwargs)``
        is the uncompiled step it falls back on); else None. :class:`inference.svi.SVIStep`
        asks for it."""
        return CompiledStep(self, optimizer, eager_step) if self.backend == "step" else None

    # -- the ELBO interface -------------------------------------------------------------------
    def _get_trace(self, model, guide, args, kwargs):
        """One (model trace, guide trace) pair: the estimator's (Pyro's abstract hook)."""
        return self.estimator._get_trace(model, guide, args, kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """-ELBO estimate whose gradient is the estimator's, from the compiled graph."""
        if not torch.is_grad_enabled():  # nothing to differentiate: the eager loss is as fast
            return loss_pair(self.estimator, model, guide, args, kwargs)
        try:
            signature = replay.signature(model, guide, args, kwargs)
        except TypeError as err:
            self._refuse(None, f"an argument that is not a tensor is not hashable ({err})")
            return loss_pair(self.estimator, model, guide, args, kwargs)
        if signature in self.uncompiled:
            return loss_pair(self.estimator, model, guide, args, kwargs)
        graph = self._graphs.get(signature)
        if graph is None:
            return self._compile(signature, model, guide, args, kwargs)
        try:
            with torch.jit.optimized_execution(False):  # (no effect on an Inductor graph)
                return graph.fn(*self._inputs(graph), *replay.tensor_args(args, kwargs))
        except RuntimeError as err:  # Ctrl-C in Python code the graph calls back into
            if _INTERRUPTED in str(err):  # the interpreter wrapped it: give it back as such
                raise KeyboardInterrupt from None
            raise

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
        tensors = replay.tensor_args(args, kwargs)
        devices = replay.rng_devices(tensors)
        before = replay.parameter_ids(model, guide)
        state = replay.rng_state(devices)
        eager = loss_pair(self.estimator, model, guide, args, kwargs)
        if not eager.requires_grad:
            self.compile_seconds += time.perf_counter() - start
            return eager
        after = replay.rng_state(devices)  # where the eager step leaves the generator
        created = replay.parameter_ids(model, guide) != before
        if created:  # an autoguide's first call: this step is the eager one; probe afresh
            state, probe = after, loss_pair(self.estimator, model, guide, args, kwargs)
        else:  # the eager step is the probe, and the traced graph gives this step
            probe = eager
        leaves = replay.leaves(probe)
        store = {id(t): name for name, t in pyro.get_param_store().named_parameters()}
        names = tuple(store.get(id(t)) for t in leaves)
        n = len(leaves)

        def traced(*inputs):
            rebuilt_args, rebuilt_kwargs = replay.with_tensors(args, kwargs, inputs[n:])
            return loss_pair(self.estimator, model, guide, rebuilt_args, rebuilt_kwargs)

        replay.set_rng_state(devices, state)
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
            replay.set_rng_state(devices, state)
            with torch.jit.optimized_execution(False):
                compiled = fn(*leaves, *tensors)
            mismatch = check.mismatch(probe, compiled, leaves)
            if mismatch:
                reason = f"the traced loss disagrees with the eager one: {mismatch}"
        if not reason and self.backend == "inductor":  # ("step" compiles the step, not the loss)
            fn, compiled = self._inductor(signature, traced, fn, compiled, state, devices, probe,
                                          leaves, tensors)  # fmt: skip
        replay.set_rng_state(devices, after)  # the traced run drew as many numbers as the eager one
        self.compile_seconds += time.perf_counter() - start
        if reason:
            self._refuse(signature, reason)
            return eager
        self._graphs[signature] = _Graph(fn, names, tuple(leaves))
        return eager if created else compiled

    def _inductor(self, signature, traced, script, scripted, state, devices, probe, leaves,
                  tensors):  # fmt: skip
        """The checked TorchScript trace ``script`` (whose result was ``scripted``) recompiled
        by Inductor (:mod:`inference.jit.inductor`) from the same random state and checked against
        the probe in the same way; where it fails or disagrees, one warning and ``script``."""
        try:
            replay.set_rng_state(devices, state)
            with pyro.validation_enabled(False):
                fn = inductor.compile_loss(traced, [*leaves, *tensors])
            replay.set_rng_state(devices, state)
            compiled = fn(*leaves, *tensors)
            mismatch = check.mismatch(probe, compiled, leaves)
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
