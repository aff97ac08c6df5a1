r"""Gradient variance and signal-to-noise ratio of any estimator at fixed variational parameters.

For an estimator g_hat of the ELBO gradient (one call of Pyro's differentiable loss, with its own
``num_particles``), M independent draws at the *same* parameters give, per parameter element::

    mean     = 1/M sum_m g_hat_m                        (estimates the true gradient)
    variance = 1/(M - 1) sum_m (g_hat_m - mean)^2       (unbiased sample variance)
    SNR      = |mean| / sqrt(variance)                  (Rainforth et al. 2018, Eq. 6)

and, per parameter tensor and over all parameters, ||mean||_2 / sqrt(sum of variances).

Gradients are of the ELBO (= -loss), so a positive mean means "increase this parameter".
:func:`variance_along_run` repeats this every few steps of an SVI run for several estimators at
once: the picture of Roeder, Wu & Duvenaud (2017, Fig. 1), where the path-derivative
estimator's variance falls towards zero as q approaches the posterior and Trace_ELBO's does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch

from inference.svi.fit import FitResult, fit_svi

__all__ = ["GradientMoments", "VarianceTrace", "gradient_moments", "variance_along_run"]


class GradientMoments(NamedTuple):
    """Result of :func:`gradient_moments`.

    Attributes:
        mean: parameter name -> mean ELBO gradient, the parameter's shape.
        variance: parameter name -> per-element sample variance, the parameter's shape.
        num_draws: M.
        seconds: wall-clock time per draw (the estimator's cost per step, forward + backward).
    """

    mean: dict[str, torch.Tensor]
    variance: dict[str, torch.Tensor]
    num_draws: int
    seconds: float

    def total_variance(self, prefix: str = "") -> float:
        """Sum of the per-element variances (trace of the covariance) over the parameters whose
        name starts with ``prefix`` (all by default; ``"guide."`` for q's parameters only)."""
        return sum(v.sum().item() for k, v in self.variance.items() if k.startswith(prefix))

    def standard_error(self) -> dict[str, torch.Tensor]:
        """Per-element standard error of ``mean``: sqrt(variance / M)."""
        return {k: (v / self.num_draws).sqrt() for k, v in self.variance.items()}

    def snr(self) -> dict[str, torch.Tensor]:
        """Per-element |mean| / sd (inf where the variance is exactly 0 and the mean is not)."""
        return {k: self.mean[k].abs() / self.variance[k].sqrt() for k in self.mean}

    def parameter_snr(self) -> dict[str, float]:
        """Per parameter tensor: ||mean||_2 / sqrt(sum of variances) -- how far the mean step
        stands out of the noise (elementwise ratios of saturated, near-constant parameters
        would otherwise dominate a median)."""
        return {k: (self.mean[k].norm() / self.variance[k].sum().sqrt()).item() for k in self.mean}

    def overall_snr(self) -> float:
        """||mean||_2 / sqrt(total variance) over all parameters together."""
        norm = math.sqrt(sum(m.square().sum().item() for m in self.mean.values()))
        total = self.total_variance()
        return norm / math.sqrt(total) if total > 0 else math.inf


def gradient_moments(
    model: Callable,
    guide: torch.nn.Module,
    elbo: pyro.infer.ELBO,
    *args,
    num_draws: int = 100,
    seed: int | None = None,
    **kwargs,
) -> GradientMoments:
    """Mean and variance of ``elbo``'s gradient over ``num_draws`` independent draws.

    Args:
        model, guide: as for :func:`inference.svi.fit_svi` (the guide, and the model if it is a
            module, hold the parameters). elbo: a Pyro ELBO, e.g. ``get_elbo("stl")``.
        *args, **kwargs: the model's arguments.
        num_draws: M >= 2. seed: ``pyro.set_rng_seed(seed)`` first, if given.

    Returns:
        :class:`GradientMoments` over every trainable parameter of ``elbo(model, guide)``; the
        parameters themselves are not changed, and their ``.grad`` is left untouched.
    """
    if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 2:
        raise ValueError(f"num_draws must be an integer >= 2, got {num_draws!r}")
    if seed is not None:
        pyro.set_rng_seed(seed)
    loss_fn = elbo(model, guide)
    named = [(n, p) for n, p in loss_fn.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the guide (and model) hold no trainable nn.Parameters")
    params = [p for _, p in named]
    # Welford's running mean and sum of squared deviations: stable when |mean| >> sd.
    mean = [torch.zeros_like(p) for p in params]
    sq_dev = [torch.zeros_like(p) for p in params]
    start = time.perf_counter()
    with pyro.validation_enabled(False):
        for m in range(1, num_draws + 1):
            loss = loss_fn(*args, **kwargs)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for i, g in enumerate(grads):
                g = torch.zeros_like(params[i]) if g is None else -g  # ELBO = -loss
                delta = g - mean[i]
                mean[i] += delta / m
                sq_dev[i] += delta * (g - mean[i])
    seconds = (time.perf_counter() - start) / num_draws
    names = [n for n, _ in named]
    return GradientMoments(
        dict(zip(names, mean)),
        {n: d / (num_draws - 1) for n, d in zip(names, sq_dev)},
        num_draws,
        seconds,
    )


class VarianceTrace(NamedTuple):
    """Result of :func:`variance_along_run`.

    Attributes:
        steps: the SVI steps at which the variances were measured (0 = before the first step).
        total_variance: estimator name -> total gradient variance at each of ``steps``.
        fit: the SVI run's :class:`~inference.svi.FitResult`.
    """

    steps: list[int]
    total_variance: dict[str, list[float]]
    fit: FitResult


def variance_along_run(
    model: Callable,
    guide: torch.nn.Module,
    train_elbo: pyro.infer.ELBO,
    estimators: dict[str, pyro.infer.ELBO],
    *args,
    num_steps: int,
    every: int = 50,
    num_draws: int = 50,
    lr: float = 0.05,
    lr_final: float | None = None,
    seed: int | None = 0,
    progress: bool = False,
    guides: dict[str, torch.nn.Module] | None = None,
    **kwargs,
) -> VarianceTrace:
    """Train with ``train_elbo`` and, every ``every`` steps, measure each estimator's total
    gradient variance at the current parameters (``num_draws`` draws each).

    ``guides`` may give, per estimator name, a guide sharing ``guide``'s parameters to measure
    with (e.g. one that samples a discrete site the training guide enumerates).

    The measurements draw random numbers, so the trajectory differs from an unmeasured run with
    the same seed, but it is reproducible.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    steps: list[int] = []
    totals: dict[str, list[float]] = {name: [] for name in estimators}

    def measure(step: int) -> None:
        steps.append(step)
        for name, estimator in estimators.items():
            moments = gradient_moments(
                model, guide, estimator, *args, num_draws=num_draws, **kwargs
            )
            totals[name].append(moments.total_variance())

    if seed is not None:
        pyro.set_rng_seed(seed)
    measure(0)

    def callback(step: int, _guide) -> None:
        if (step + 1) % every == 0 or step == num_steps - 1:
            if not steps or steps[-1] != step + 1:
                measure(step + 1)

    fit = fit_svi(
        model,
        guide,
        train_elbo,
        *args,
        num_steps=num_steps,
        lr=lr,
        lr_final=lr_final,
        seed=None,
        progress=progress,
        callback=callback,
        callback_every=1,
        **kwargs,
    )
    if not all(math.isfinite(v) for values in totals.values() for v in values):
        raise FloatingPointError("a gradient variance was not finite; try a lower lr")
    return VarianceTrace(steps, totals, fit)
