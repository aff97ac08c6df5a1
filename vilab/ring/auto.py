"""``vilab ring --method auto-cavi``: the Bayesian ring mixture (Dirichlet weights, Normal
means; :mod:`analytic.ring_bayes`) fitted by its hand-derived CAVI and by the CAVI that
:func:`inference.cavi.auto_cavi` derives from the Pyro model, from one start, and their
agreement."""

from __future__ import annotations

import time

import torch

from analytic import ring
from analytic.ring_bayes import BayesRingPrior, RingMeanField, cavi_step
from inference.cavi import auto_cavi
from ppl_models.ring import bayes_model

__all__ = ["PRIOR", "compare"]

PRIOR = BayesRingPrior(concentration=1.0, loc=(0.0, 0.0), precision=0.01)  # means ~ N(0, 10^2 I)


def _hand(X, q, max_iter: int, tol: float):
    """Hand CAVI sweeps from q until one gains <= tol |ELBO|: (q, ELBO history, seconds)."""
    history = []
    start = time.perf_counter()
    for _ in range(max_iter):
        q, value = cavi_step(X, q, PRIOR)
        history.append(value)
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
            break
    return q, history, time.perf_counter() - start


def compare(X: torch.Tensor, num_components: int, seed: int, num_init: int = 10,
            max_iter: int = 500, tol: float = 1e-10) -> dict:  # fmt: skip
    """Hand CAVI from ``num_init`` k-means++ starts (q(mu_k) centred on the seeds with
    precision rho + N/K, q(pi) = Dir(c0 + N/K)), the best ELBO kept, then auto-CAVI from that
    start for as many sweeps: the fitted means and weights (E pi), both ELBOs, the largest
    relative parameter difference and the seconds per sweep of each."""
    X = X.double()
    K, N = num_components, X.shape[0]
    share = torch.full((K,), N / K, dtype=X.dtype)
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(num_init):
        centres = ring.kmeans_plus_plus(X, K, gen)
        start = RingMeanField(None, PRIOR.concentration + share, centres, PRIOR.precision + share)
        q, history, seconds = _hand(X, start, max_iter, tol)
        if best is None or history[-1] > best[2][-1]:
            best = (start, q, history, seconds)
    q0, q, history, hand_seconds = best
    init = {"pi": {"concentration": q0.concentration},
            "mu": {"loc": q0.loc, "scale": q0.precision.rsqrt()[:, None]}}  # fmt: skip
    auto = auto_cavi(bayes_model, X, K, PRIOR.concentration, PRIOR.loc, PRIOR.precision,
                     num_steps=len(history), tol=0.0, init=init)  # fmt: skip
    p = auto.params

    def rel(a, b):
        return float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())

    return {
        "means": q.loc,
        "weights": q.concentration / q.concentration.sum(),
        "elbo": auto.elbo.item(),
        "hand_elbo": history[-1].item(),
        "elbo_relative_difference": abs(auto.elbo.item() / history[-1].item() - 1.0),
        "max_relative_parameter_difference": max(
            rel(p["mu"]["loc"], q.loc), rel(p["pi"]["concentration"], q.concentration)
        ),
        "sweeps": auto.num_steps,
        "seconds_per_sweep": auto.sweep_seconds / auto.num_steps,
        "hand_seconds_per_sweep": hand_seconds / len(history),
    }
