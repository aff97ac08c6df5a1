r"""The whole SVI step as one compiled call: the ``backend="step"`` of
:class:`inference.jit.CompiledELBO`, run by :class:`inference.svi.SVIStep`.

One step is the estimator's loss (-ELBO, value-preserving surrogate), its gradient with respect
to every parameter of the optimiser, and ``torch.optim.Adam``'s update (Kingma & Ba 2015,
Algorithm 1, with torch's bias-corrected step
``p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``). The three are
recorded together by ``make_fx`` (below autograd: the backward appears as plain ATen ops, so
the graph is never differentiated again) and compiled by TorchInductor as one inference graph
whose inputs are the parameters, the optimiser's own state tensors (``exp_avg``,
``exp_avg_sq``, ``step``), one learning rate per parameter group (a 0-d float64 tensor, so a
schedule needs no recompile) and the step's tensor arguments. Parameters and state are updated
in place; the loss comes back as a 0-d tensor. A non-finite loss leaves every input as it was
(the update is selected by ``isfinite(loss)`` inside the graph), so the caller can raise as the
eager step does, before anything changed.

A signature (:func:`inference.jit.replay.signature`) is compiled at its second call: the first
is the eager step, which traces and checks the loss by TorchScript
(:class:`~inference.jit.CompiledELBO`), so a model whose loss cannot be traced is refused there.
At the second call the eager step runs from a saved state (the reference); the graph is
recorded and compiled from the same state and random state; its loss, parameter updates and
Adam state must equal the reference's to sqrt(eps) of the dtype
(:func:`inference.jit.check.step_mismatch`), and the step then stands as the eager one took it.
Anything else -- another optimiser, Adam options other than the defaults, a compiler failure
or a mismatch -- keeps the eager step for that signature, with one warning. How and why, with
the measured costs: ``docs/guides/compiled-svi.md``.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable

import torch

from inference.jit import check, inductor, replay
from inference.jit.pairs import loss_pair

__all__ = ["CompiledStep", "optimizer_refusal"]


def optimizer_refusal(optimizer: torch.optim.Optimizer) -> str:
    """'' if ``optimizer`` is a ``torch.optim.Adam`` the compiled step reproduces (a subclass
    that keeps Adam's update, ``step`` and ``_init_group``; every group with
    ``weight_decay=0``, ``amsgrad``, ``maximize``, ``differentiable`` off); else why not."""
    kind = type(optimizer)
    if not isinstance(optimizer, torch.optim.Adam) or any(  # (torch wraps step in profiling hooks)
        inspect.unwrap(getattr(kind, m)) is not inspect.unwrap(getattr(torch.optim.Adam, m))
        for m in ("step", "_init_group")
    ):
        return f"the optimiser is {kind.__name__}, not torch.optim.Adam"
    for i, group in enumerate(optimizer.param_groups):
        for option in ("weight_decay", "amsgrad", "maximize", "differentiable"):
            if group.get(option):
                return f"Adam's {option}={group[option]!r} (parameter group {i})"
        if isinstance(group["lr"], torch.Tensor):
            return f"a tensor learning rate (parameter group {i})"
    return ""


class CompiledStep:
    """``optimizer``'s Adam step on ``elbo``'s loss, compiled whole (see the module doc).

    Args:
        elbo: a :class:`~inference.jit.CompiledELBO` (its ``estimator`` gives the loss; its
            ``uncompiled`` and ``compile_seconds`` are shared, so a fit reports one figure).
        optimizer: the ``torch.optim.Adam`` that owns the parameters (its state is read and
            written in place, so ``state_dict()`` checkpoints and schedulers work as usual).
        eager_step: ``eager_step(*args, **kwargs) -> float``: the uncompiled step (loss,
            backward, ``optimizer.step()``), run at a signature's first call, as the reference
            at its second, and wherever the compiled step is refused.

    Calling it takes one step and returns the loss value (-ELBO estimate).

    Raises:
        FloatingPointError: from a compiled step whose loss is NaN or infinite (parameters and
            Adam's state are then as they were before the call).
    """

    def __init__(self, elbo, optimizer: torch.optim.Optimizer, eager_step: Callable[..., float]):
        self.elbo = elbo
        self.optimizer = optimizer
        self.eager_step = eager_step
        self.refusal = optimizer_refusal(optimizer)
        self._seen: set = set()
        self._graphs: dict = {}
        self._lrs = [torch.zeros((), dtype=torch.float64) for _ in optimizer.param_groups]

    def __call__(self, model, guide, *args, **kwargs) -> float:
        try:
            signature = replay.signature(model, guide, args, kwargs)
        except TypeError:  # the ELBO's own call warns and stays eager
            return self.eager_step(*args, **kwargs)
        graph = self._graphs.get(signature)
        if graph is not None:
            return self._run(graph, args, kwargs)
        if signature in self.elbo.uncompiled or signature not in self._seen or self.refusal:
            if self.refusal and signature not in self._seen:
                self._refuse(signature, self.refusal)
            self._seen.add(signature)
            return self.eager_step(*args, **kwargs)
        return self._compile(signature, model, guide, args, kwargs)

    # -- running --------------------------------------------------------------------------------
    def _state(self) -> tuple[list[torch.Tensor], list[int]]:
        """The parameters that have Adam state, then their exp_avg, exp_avg_sq and step, and
        the index of each one's parameter group."""
        params, groups = [], []
        for g, group in enumerate(self.optimizer.param_groups):
            for p in group["params"]:
                if p.requires_grad and p in self.optimizer.state:
                    params.append(p)
                    groups.append(g)
        states = [self.optimizer.state[p] for p in params]
        keys = ("exp_avg", "exp_avg_sq", "step")
        return params + [s[k] for k in keys for s in states], groups

    def _run(self, graph, args, kwargs) -> float:
        fn, state_ids = graph
        state, _ = self._state()
        if [id(t) for t in state] != state_ids:  # a parameter gained state, or a load_state_dict
            self._graphs = {}  # swapped the tensors: compile afresh from the eager step
            self._seen = set()
            return self.eager_step(*args, **kwargs)
        for lr, group in zip(self._lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])
        with torch.no_grad():
            loss = fn(*state, *self._lrs, *replay.tensor_args(args, kwargs))
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"SVI loss became {value}")
        return value

    # -- compiling ------------------------------------------------------------------------------
    def _refuse(self, signature, reason: str) -> None:
        self.elbo.uncompiled[signature] = reason
        warnings.warn(
            f"the SVI step is not compiled whole: {reason}. The step runs as loss, backward and "
            "torch's Adam (same values, slower steps)",
            stacklevel=4,
        )

    def _step_function(self, model, guide, args, kwargs, groups, num_params: int):
        """The step as a function of (state..., lrs..., tensor args...), for ``make_fx``."""
        estimator = self.elbo.estimator
        opts = [self.optimizer.param_groups[g] for g in groups]
        n = num_params

        def step(*inputs):
            params = inputs[:n]
            exp_avgs, exp_avg_sqs = inputs[n : 2 * n], inputs[2 * n : 3 * n]
            steps = inputs[3 * n : 4 * n]
            lrs = inputs[4 * n : 4 * n + len(self._lrs)]
            rebuilt_args, rebuilt_kwargs = replay.with_tensors(
                args, kwargs, inputs[4 * n + len(self._lrs) :]
            )
            with torch.enable_grad():
                loss = loss_pair(estimator, model, guide, rebuilt_args, rebuilt_kwargs)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            ok = torch.isfinite(loss.detach())
            for p, grad, m, v, t, opt, g in zip(
                params, grads, exp_avgs, exp_avg_sqs, steps, opts, groups
            ):
                if grad is None:  # Adam skips a parameter without a gradient
                    continue
                beta1, beta2 = opt["betas"]
                t_new = t + 1
                t64 = t_new.to(torch.float64)
                m_new = m.lerp(grad, 1 - beta1)
                v_new = v * beta2 + grad * grad * (1 - beta2)
                step_size = (lrs[g] / (1 - torch.pow(beta1, t64))).to(p.dtype)
                root = torch.sqrt(1 - torch.pow(beta2, t64)).to(p.dtype)
                p_new = p - step_size * m_new / (v_new.sqrt() / root + opt["eps"])
                with torch.no_grad():  # (a parameter is a leaf that requires grad)
                    for old, new in ((p, p_new), (m, m_new), (v, v_new), (t, t_new)):
                        old.copy_(torch.where(ok, new, old))
            return loss.detach()

        return step

    def _compile(self, signature, model, guide, args, kwargs) -> float:
        """Eager reference, record, compile, check (module doc); the step is the eager one."""
        start = time.perf_counter()
        if len(self._lrs) != len(self.optimizer.param_groups):  # a group was added since
            self._lrs = [torch.zeros((), dtype=torch.float64) for _ in self.optimizer.param_groups]
        tensors = replay.tensor_args(args, kwargs)
        devices = replay.rng_devices(tensors)
        state, groups = self._state()
        before = [t.detach().clone() for t in state]
        rng = replay.rng_state(devices)
        value = self.eager_step(*args, **kwargs)
        rng_after = replay.rng_state(devices)
        after, reason = [t.detach().clone() for t in state], ""
        state_now, _ = self._state()
        if [id(t) for t in state_now] != [id(t) for t in state]:
            self._seen.discard(signature)  # a parameter got its first gradient: next time
            self._add_seconds(start)
            return value
        num_params = len(groups)
        try:
            fn = self._record_and_compile(
                model, guide, args, kwargs, groups, num_params, state, before, rng, devices
            )
            self._restore(state, before, rng, devices)
            with torch.no_grad():
                loss = fn(*state, *self._lrs, *tensors)
            reason = check.step_mismatch(value, loss, before, after, state, num_params)
        except Exception as err:  # noqa: BLE001 -- any failure of the compiler: stay eager
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        self._restore(state, after, rng_after, devices)  # the step stands as the eager one
        if reason:
            self._refuse(signature, reason)
        else:
            self._graphs[signature] = (fn, [id(t) for t in state])
        self._add_seconds(start)
        return value

    def _add_seconds(self, start: float) -> None:
        self.elbo.compile_seconds += time.perf_counter() - start

    def _record_and_compile(self, model, guide, args, kwargs, groups, n, state, before, rng,
                            devices):  # fmt: skip
        step = self._step_function(model, guide, args, kwargs, groups, n)
        for lr, group in zip(self._lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])
        self._restore(state, before, rng, devices)
        inputs = [*state, *self._lrs, *replay.tensor_args(args, kwargs)]
        return inductor.compile_step(step, inputs)

    @staticmethod
    def _restore(state, values, rng, devices) -> None:
        with torch.no_grad():
            for t, v in zip(state, values):
                t.copy_(v)
        replay.set_rng_state(devices, rng)
