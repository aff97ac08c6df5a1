"""``vilab earthquake --method auto-cavi``: automatic CAVI (:func:`inference.cavi.auto_cavi`)
on the Pyro model, beside the hand-written CAVI of :mod:`analytic.earthquake`, from the same
k-means++ start, and their agreement."""

from __future__ import annotations

import time

import torch

from analytic.earthquake import Hyperparameters, canonical_order, cavi, initial_mean_field
from inference.cavi import auto_cavi
from ppl_models.earthquake import model

__all__ = ["compare"]


def compare(X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, args) -> dict:
    """Both CAVIs from one start (k-means++ seeded by ``--seed``): the hand CAVI to ``--tol``
    (at most ``--max-iter`` sweeps), then auto-CAVI for as many sweeps; their ELBOs, the
    largest relative difference of the parameters, and seconds per sweep. The mixing weights
    are put in decreasing order, as the hand CAVI runs them
    (:func:`analytic.earthquake.canonical_order`), so that the two see the same model."""
    _, _, hp = canonical_order(hp)
    q0 = initial_mean_field(X, S, hp, torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    hand = cavi(X, S, hp, max_iter=args.max_iter, tol=args.tol, init=q0)
    hand_seconds = time.perf_counter() - start
    init = {
        "mu": {"loc": q0.loc, "scale": q0.precision.rsqrt()[:, None]},
        "lam": {"concentration": q0.concentration, "rate": q0.rate},
    }
    auto = auto_cavi(model, X, S, hp, num_steps=max(hand.num_iter, 1), tol=0.0, init=init)
    p, q = auto.params, hand.q

    def rel(a, b):
        return float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())

    return {
        "elbo": auto.elbo.item(),
        "hand_elbo": hand.elbo.item(),
        "elbo_relative_difference": abs(auto.elbo.item() / hand.elbo.item() - 1.0),
        "max_relative_parameter_difference": max(
            rel(p["mu"]["loc"], q.loc),
            rel(p["lam"]["concentration"], q.concentration),
            rel(p["lam"]["rate"], q.rate),
        ),
        "sweeps": auto.num_steps,
        "hand_sweeps": hand.num_iter,
        "analysis_seconds": auto.analysis_seconds,
        "seconds_per_sweep": auto.sweep_seconds / auto.num_steps,
        "hand_seconds_per_sweep": hand_seconds / max(hand.num_iter, 1),
    }
