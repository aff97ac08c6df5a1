r"""Pareto-smoothed importance sampling (PSIS) of a fitted guide: did the VI work?

Yao, Vehtari, Simpson & Gelman (2018), "Yes, but Did It Work?: Evaluating Variational
Inference", Sec. 3. The weights are w_s = p(x, z_s) / q(z_s), z_s ~ q; the fitted
generalised-Pareto shape k-hat of their tail says whether q can be trusted::

    k-hat < 0.5         good: q is close to the posterior; importance sampling corrects it
    0.5 <= k-hat < 0.7  usable: the PSIS-corrected estimates are reliable, plain VI ones less so
    k-hat >= 0.7        not trustworthy: q misses mass the posterior has (too-light tails)

with the effective sample size 1 / sum_s w~_s^2 of the normalised smoothed weights w~, and the
PSIS-corrected posterior means sum_s w~_s z_s. Smoothing is ArviZ's ``psislw``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from inference.diagnostics.common import arviz, is_drawn, is_latent, numpy_of

__all__ = [
    "GOOD_KHAT",
    "USABLE_KHAT",
    "PsisResult",
    "guide_log_weights",
    "psis_check",
    "psis_from_log_weights",
    "verdict",
]

GOOD_KHAT = 0.5  # k-hat below: q is good (Yao et al. 2018, Sec. 3)
USABLE_KHAT = 0.7  # below: usable with PSIS correction; above: not trustworthy


def verdict(khat: float) -> str:
    """The words for a k-hat value (Yao et al. 2018, Sec. 3; thresholds 0.5 and 0.7)."""
    if not math.isfinite(khat):
        return "undefined (the log weights are not finite)"
    if khat < GOOD_KHAT:
        return "good: q is close to the posterior, and importance sampling corrects what is left"
    if khat < USABLE_KHAT:
        return "usable: PSIS-corrected estimates are reliable; raw VI estimates less so"
    return "not trustworthy: q misses posterior mass (its tails are too light); do not use it"


class PsisResult(NamedTuple):
    """Result of :func:`psis_check`.

    Attributes:
        khat: Pareto k-hat (a float; or an array, one per row of the log weights).
        ess: effective sample size of the smoothed weights (same shape as khat).
        num_samples: S. verdict: :func:`verdict` of ``khat`` (of the largest, for arrays).
        means: site -> PSIS-corrected posterior mean. raw_means: site -> plain mean under q.
        log_weights: the raw log weights log p(x, z_s) - log q(z_s), shape (S,).
    """

    khat: float | np.ndarray
    ess: float | np.ndarray
    num_samples: int
    verdict: str
    means: dict[str, np.ndarray]
    raw_means: dict[str, np.ndarray]
    log_weights: np.ndarray


def psis_from_log_weights(log_weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised smoothed log weights, k-hat, ESS) from raw log weights (..., S)."""
    lw = numpy_of(log_weights).astype(np.float64)
    with warnings.catch_warnings():
        # ArviZ warns when k-hat is large; the verdict says so in words instead.
        warnings.simplefilter("ignore", UserWarning)
        smoothed, khat = arviz().psislw(lw)
    weights = np.exp(smoothed)
    ess = 1.0 / np.sum(weights**2, axis=-1)
    return smoothed, np.asarray(khat), ess


def _plate_nesting(model: Callable, guide_trace, args, kwargs) -> int:
    """The deepest plate dim of the guide's trace and of the model replayed on it (0 if none)."""
    model_trace = poutine.trace(poutine.replay(model, guide_trace)).get_trace(*args, **kwargs)
    dims = [
        frame.dim
        for trace in (guide_trace, model_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims, default=0)


def guide_log_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int,
    max_plate_nesting: int | None = None,
    sites: Sequence[str] | None = None,
    log_joint_fn: Callable[[dict], torch.Tensor] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Vectorised draws z_s ~ q and their log weights log p(x, z_s) - log q(z_s).

    The guide and the model run once each inside a particle plate at dim
    ``-(max_plate_nesting + 1)``; log q sums the guide's ``sites`` (default: all of its latent
    sites, under the model's names) and every auxiliary site of an autoguide (whose point
    masses carry only a log-Jacobian: the density of the draw is the auxiliary site's), log p
    the model's sample sites (each times its ``scale``, e.g. N/B under a subsampling plate)
    replayed on those draws -- or ``log_joint_fn(draws)`` when given (e.g. the earthquake model
    with Z summed out exactly, and ``sites`` without Z). The draws returned are the ``sites``.
    ``max_plate_nesting=None`` reads it from one unvectorised run of the guide and the model
    (the deepest plate dim, as Pyro's ELBOs guess it).

    Returns:
        (log_weights (S,), draws: site -> (S, *site shape)).
    """

    def vectorised(fn):
        def wrapped(*a, **k):
            with pyro.plate("psis_particles", num_samples, dim=dim):
                return fn(*a, **k)

        return wrapped

    def per_particle(site) -> torch.Tensor:
        """log-density of a site, scaled, summed over everything but the particle dim: (S,)."""
        lp = site["fn"].log_prob(site["value"]) * site["scale"]
        return lp.reshape(num_samples, -1).sum(-1)

    with torch.no_grad(), pyro.validation_enabled(False):
        single = poutine.trace(guide).get_trace(*args, **kwargs)  # the sites' natural shapes
        if max_plate_nesting is None:
            max_plate_nesting = _plate_nesting(model, single, args, kwargs)
        dim = -(max_plate_nesting + 1)
        guide_trace = poutine.trace(vectorised(guide)).get_trace(*args, **kwargs)
        latent = [n for n, s in single.nodes.items() if is_latent(s)]
        keep = list(sites) if sites is not None else latent
        log_q = sum(
            per_particle(s)
            for n, s in guide_trace.nodes.items()
            if n in keep or (is_drawn(s) and not is_latent(s))  # auxiliary sites: always
        )
        # (S, *natural shape): drops the size-1 placeholders of plates the site is not in
        draws = {
            n: guide_trace.nodes[n]["value"].reshape(num_samples, *single.nodes[n]["value"].shape)
            for n in keep
        }
        if log_joint_fn is not None:
            log_p = log_joint_fn(draws)
        else:
            model_trace = poutine.trace(poutine.replay(vectorised(model), guide_trace)).get_trace(
                *args, **kwargs
            )
            log_p = sum(
                per_particle(s)
                for s in model_trace.nodes.values()
                if s["type"] == "sample" and not site_is_subsample(s)
            )
    return log_p - log_q, draws


def psis_check(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    max_plate_nesting: int | None = None,
    sites: Sequence[str] | None = None,
    log_joint_fn: Callable[[dict], torch.Tensor] | None = None,
    seed: int = 0,
    **kwargs,
) -> PsisResult:
    """Is q good enough? PSIS k-hat, ESS and PSIS-corrected means (module docstring).

    Args: as :func:`guide_log_weights`; ``seed`` for the draws.
    """
    pyro.set_rng_seed(seed)
    log_w, draws = guide_log_weights(
        model, guide, *args, num_samples=num_samples, max_plate_nesting=max_plate_nesting,
        sites=sites, log_joint_fn=log_joint_fn, **kwargs,
    )  # fmt: skip
    smoothed, khat, ess = psis_from_log_weights(log_w)
    weights = np.exp(smoothed)
    means, raw = {}, {}
    for name, value in draws.items():
        v = numpy_of(value).reshape(num_samples, -1)
        shape = value.shape[1:]
        means[name] = (weights[:, None] * v).sum(0).reshape(shape)
        raw[name] = v.mean(0).reshape(shape)
    k = float(khat)
    return PsisResult(k, float(ess), num_samples, verdict(k), means, raw, numpy_of(log_w))
