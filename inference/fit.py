"""The one SVI loop of the project.

Pyro's ELBO is used as a module -- ``elbo(model, guide)`` is a ``torch.nn.Module`` whose
forward returns the differentiable loss (-ELBO estimate, value-preserving surrogate) -- and ONE
``torch.optim.Adam`` owns every parameter. On the VAE this is about 20% faster than
``pyro.infer.SVI`` with ``pyro.optim.Adam`` (one optimiser per parameter); see DESIGN.md §6.
Guides (and models, if they learn anything) are plain ``torch.nn.Module``s holding their
parameters as ``nn.Parameter``s.
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

__all__ = ["FitResult", "fit_svi"]


class FitResult(NamedTuple):
    """Result of :func:`fit_svi`.

    Attributes:
        elbo_history: the Monte Carlo ELBO estimate (= -loss) at every step, shape (num_steps,).
        num_steps: steps taken.
        seconds: wall-clock time of the loop.
    """

    elbo_history: torch.Tensor
    num_steps: int
    seconds: float


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

    Returns:
        :class:`FitResult`.

    Raises:
        FloatingPointError: if the loss becomes NaN or infinite (the step is named).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if lr_final is not None and not (math.isfinite(lr_final) and 0 < lr_final):
        raise ValueError(f"lr_final must be a finite number > 0, got {lr_final!r}")
    if seed is not None:
        pyro.set_rng_seed(seed)
    loss_fn = elbo(model, guide)
    params = [p for p in loss_fn.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the guide (and model) hold no trainable nn.Parameters")
    optimizer = torch.optim.Adam(params, lr=lr)
    gamma = 1.0 if lr_final is None else (lr_final / lr) ** (1.0 / max(num_steps - 1, 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)

    history = torch.empty(num_steps, dtype=torch.float64)
    start = time.perf_counter()
    bar = tqdm(range(num_steps), desc="SVI", disable=not progress, leave=False, mininterval=0.5)
    with pyro.validation_enabled(False), warnings.catch_warnings():
        # Pyro warns on a NaN loss and carries on; we raise below, naming the step.
        warnings.filterwarnings("ignore", message="Encountered NaN")
        for step in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(*args, **kwargs)
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"SVI loss became {value} at step {step}; try a lower lr")
            history[step] = -value
            if callback is not None and (step % callback_every == 0 or step == num_steps - 1):
                callback(step, guide)
            if progress and step % 50 == 0:
                bar.set_postfix(elbo=f"{-value:.6g}", refresh=False)
    return FitResult(history, num_steps, time.perf_counter() - start)
