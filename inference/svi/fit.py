"""The one SVI loop of the project, and the step it is made of.

Pyro's ELBO is used as a module -- ``elbo(model, guide)`` is a ``torch.nn.Module`` whose
forward returns the differentiable loss (-ELBO estimate, value-preserving surrogate) -- and ONE
``torch.optim.Adam`` owns every parameter. On the VAE this is about 20% faster than
``pyro.infer.SVI`` with ``pyro.optim.Adam`` (one optimiser per parameter), as measured in
``docs/design.md`` (the SVI loop).
Guides (and models, if they learn anything) are plain modules (``torch.nn.Module``) holding
their parameters as ``nn.Parameter`` tensors.

:class:`SVIStep` is one optimisation step (loss, backward, Adam, learning-rate schedule, and
a NaN check *before* the parameters are touched). :func:`fit_svi` repeats it on fixed
arguments; the VAE trainer (:mod:`vilab.vae.train`) repeats it over minibatches.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch
from tqdm.auto import tqdm

from inference.distributed import Collective

__all__ = ["FitResult", "SVIStep", "adam", "fit_svi"]


class FitResult(NamedTuple):
    """Result of :func:`fit_svi`.

    Attributes:
        elbo_history: the Monte Carlo ELBO estimate (= -loss) at every step, shape (num_steps,).
        num_steps: steps taken.
        seconds: wall-clock time of the loop, compilation included.
        compile_seconds: of which compiling the loss took (a compiled estimator's
            ``compile_seconds``: tracing and checking at the first step; 0 for an eager one).
    """

    elbo_history: torch.Tensor
    num_steps: int
    seconds: float
    compile_seconds: float = 0.0

    def __repr__(self) -> str:
        """One line: the steps, the last ELBO estimate and the times, not the whole history."""
        last = f"{self.elbo_history[-1].item():.6g}" if len(self.elbo_history) else "none"
        return (
            f"FitResult(num_steps={self.num_steps}, final_elbo={last}, "
            f"seconds={self.seconds:.3g}, compile_seconds={self.compile_seconds:.3g})"
        )


def _check_lr(lr, lr_final) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if lr_final is not None and not (math.isfinite(lr_final) and 0 < lr_final):
        raise ValueError(f"lr_final must be a finite number > 0, got {lr_final!r}")


def adam(params, lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused kernel where torch has one for these tensors (CPU
    and CUDA, float32/float64), else the default. Measured on the VAE (2 cores): a step of
    Adam over the 1.1 M parameters takes about 1.6 ms less fused (5.8 vs 8.2 ms per SVI step)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


class SVIStep:
    """One SVI step: -ELBO estimate, backward, one (fused) Adam step over every parameter.

    Args:
        model, guide: Pyro programs with the same signature; guide an ``nn.Module``.
        elbo: a Pyro ELBO object, e.g. from :func:`inference.estimators.get_elbo`.
        lr: Adam learning rate (> 0). gamma: multiply the learning rate by this after each
            step (1 = constant).
        group: the processes of a data-parallel run (:class:`inference.distributed.Collective`;
            None = this process alone). With several, the ELBO module is wrapped in
            ``DistributedDataParallel`` (the gradients are averaged over the ranks, so each
            rank's loss must estimate the whole data's: see ``likelihood_scale`` of
            :func:`ppl_models.earthquake.model`) and the loss value is the ranks' mean.

    With ``elbo = get_elbo(name, jit="step")`` (one process), the whole step -- loss, gradient
    and Adam -- is one compiled call from the second step of each argument signature on
    (:class:`inference.jit.step.CompiledStep`; the same numbers as this eager step, checked).

    Attributes:
        loss_fn: the ELBO module, or its ``DistributedDataParallel`` wrapper.
        optimizer, scheduler: the torch Adam and its ``ExponentialLR``; both have
            ``state_dict()`` for checkpoints.
        compiled: the :class:`~inference.jit.step.CompiledStep` (from
            ``elbo.compiled_step``), or None.
    """

    def __init__(
        self,
        model: Callable,
        guide: torch.nn.Module,
        elbo,
        lr: float,
        gamma=1.0,
        group: Collective | None = None,
    ):
        _check_lr(lr, None)
        loss_fn = elbo(model, guide)
        params = [p for p in loss_fn.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                "the guide (and model) hold no trainable nn.Parameters (an autoguide makes "
                "them at its first call: call guide(*args, **kwargs) once before fitting)"
            )
        self.group = group if group is not None else Collective(0, 1, torch.device("cpu"))
        self.loss_fn = self.group.data_parallel(loss_fn)
        self.optimizer = adam(params, lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma)
        # the whole step compiled, where the ELBO offers it (get_elbo(..., jit="step")): asked
        # of the ELBO object, so that this loop never imports the compiler
        offer = getattr(elbo, "compiled_step", None)
        alone = self.group.world_size == 1  # (several ranks all-reduce between backward and Adam)
        self.compiled = offer(self.optimizer, self._eager) if offer and alone else None
        self._programs = (model, guide)

    def __call__(self, *args, **kwargs) -> float:
        """Take one step on ``(*args, **kwargs)``; return the loss value (-ELBO estimate).

        Raises:
            FloatingPointError: if the loss is NaN or infinite; the parameters, Adam's state
                and the schedule are then left as they were before the call.
        """
        if self.compiled is not None:
            value = self.compiled(*self._programs, *args, **kwargs)
        else:
            value = self._eager(*args, **kwargs)
        self.scheduler.step()
        return value

    def _eager(self, *args, **kwargs) -> float:
        """Loss, NaN check, backward, Adam (no schedule step)."""
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # Pyro warns on a NaN loss and carries on; we raise instead.
            warnings.filterwarnings("ignore", message="Encountered NaN")
            loss = self.loss_fn(*args, **kwargs)
        # every rank sees the same value, so a non-finite one stops them all before the
        # backward (whose gradient all-reduce would otherwise wait for a rank that stopped)
        value = self.group.mean(loss)
        if not math.isfinite(value):
            raise FloatingPointError(f"SVI loss became {value}")
        loss.backward()
        self.optimizer.step()
        return value


def fit_svi(
    model: Callable,
    guide: torch.nn.Module,
    elbo: pyro.infer.ELBO,
    *args,
    num_steps: int,
    lr: float = 0.05,
    lr_final: float | None = None,
    seed: int | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.nn.Module], None] | None = None,
    callback_every: int = 10,
    group: Collective | None = None,
    **kwargs,
) -> FitResult:
    """Maximise the ELBO of ``model``/``guide`` on ``*args, **kwargs`` by Adam.

    Args:
        model, guide: Pyro programs with the same signature; guide an ``nn.Module``.
        elbo: a Pyro ELBO object, e.g. from :func:`inference.estimators.get_elbo`.
        num_steps: optimisation steps (>= 1). lr: Adam learning rate (> 0).
        lr_final: if given, the learning rate decays geometrically from ``lr`` to ``lr_final``
            over the run (lets the Monte Carlo noise of the iterates die out); else constant.
        seed: if given, ``pyro.set_rng_seed(seed)`` first, so the run is reproducible.
        progress: show a tqdm bar with the running ELBO.
        callback: called as ``callback(step, guide)`` after step 0 and every ``callback_every``
            steps, and after the last (e.g. to evaluate a closed-form ELBO along the path).
        group: data-parallel processes (:class:`SVIStep`); each rank calls ``fit_svi`` with its
            own share of the data and the same ``seed`` (so the draws of the guide agree
            across ranks, and one process with all the data takes the same steps).

    Returns:
        :class:`FitResult`.

    Raises:
        FloatingPointError: if the loss becomes NaN or infinite (the step is named).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    _check_lr(lr, lr_final)
    if seed is not None:
        pyro.set_rng_seed(seed)
    gamma = 1.0 if lr_final is None else (lr_final / lr) ** (1.0 / max(num_steps - 1, 1))
    step_fn = SVIStep(model, guide, elbo, lr, gamma, group)

    history = torch.empty(num_steps, dtype=torch.float64)
    compiled_before = getattr(elbo, "compile_seconds", 0.0)
    start = time.perf_counter()
    bar = tqdm(range(num_steps), desc="SVI", disable=not progress, leave=False, mininterval=0.5)
    with pyro.validation_enabled(False):
        for step in bar:
            try:
                value = step_fn(*args, **kwargs)
            except FloatingPointError as err:
                raise FloatingPointError(f"{err} at step {step}; try a lower lr") from None
            history[step] = -value
            if callback is not None and (step % callback_every == 0 or step == num_steps - 1):
                callback(step, guide)
            if progress and step % 50 == 0:
                bar.set_postfix(elbo=f"{-value:.6g}", refresh=False)
    compile_seconds = getattr(elbo, "compile_seconds", 0.0) - compiled_before
    return FitResult(history, num_steps, time.perf_counter() - start, compile_seconds)
