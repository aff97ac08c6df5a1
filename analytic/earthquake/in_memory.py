"""The in-memory CAVI driver of the earthquake mixture: :func:`cavi`, restarts from k-means++
seeds, sweeps of :func:`analytic.earthquake.updates.cavi_step_from_design` until the relative gain
is <= tol, then relabelling steps while one gains more than tol * |ELBO|. Every step keeps the
ELBO non-decreasing."""

from __future__ import annotations

import torch

from analytic.earthquake.labels import best_label_order, canonical_order, permute_clusters
from analytic.earthquake.params import (
    CaviResult,
    Hyperparameters,
    MeanField,
    as_data,
    check_cavi_settings,
    checked_mean_field,
)
from analytic.earthquake.seeding import initial_mean_field
from analytic.earthquake.updates import (
    cavi_step_from_design,
    data_constants,
    design,
    elbo_from_stats,
    finite_elbo,
    stats_from_design,
)

__all__ = ["cavi"]


def _sweeps(G, consts, hp, q, history, max_iter: int, tol: float):
    """CAVI sweeps from q until the relative gain of a sweep is <= tol (or max_iter sweeps);
    appends each ELBO to ``history``; returns (q, converged)."""
    for _ in range(max_iter):
        q, value = cavi_step_from_design(G, consts, hp, q)
        history.append(value)
        if abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
            return q, True
    return q, False


def _fit_from(G, consts, hp, q, max_iter: int, tol: float) -> CaviResult:
    """Sweeps to convergence, then the best relabelling (:func:`best_label_order`) while it
    gains more than tol * |ELBO|, sweeping again from each relabelled state. Every step keeps
    the ELBO non-decreasing, so ``elbo_history`` stays monotone."""
    neg_entropy_z = torch.xlogy(q.probs, q.probs).sum()
    history = [elbo_from_stats(stats_from_design(G, q.probs), neg_entropy_z, consts, hp, q)]
    q, converged = _sweeps(G, consts, hp, q, history, max_iter, tol)
    while len(history) <= max_iter:
        perm, gain = best_label_order(q, hp)
        if not gain > tol * abs(history[-1]):
            break
        q = permute_clusters(q, perm)
        history.append(history[-1] + gain)
        q, converged = _sweeps(G, consts, hp, q, history, max_iter + 1 - len(history), tol)
    return CaviResult(q, history[-1], torch.stack(history), len(history) - 1, converged)


def cavi(
    X: torch.Tensor,
    S: torch.Tensor,
    hp: Hyperparameters,
    *,
    max_iter: int = 500,
    tol: float = 1e-8,
    num_init: int = 5,
    seed: int = 0,
    init: MeanField | None = None,
) -> CaviResult:
    """Run CAVI from ``num_init`` k-means++ starts and keep the one with the highest ELBO.

    A restart stops when the ELBO gain of one sweep is at most ``tol * |ELBO|``. The ELBO is
    non-decreasing along the sweeps (each update is the exact maximiser of its block).

    The mixing weights pi are fixed, so the clusters are not exchangeable and no sweep can swap
    two labels: after a restart converges, the clusters are relabelled in the best order
    (:func:`best_label_order`) and swept again, until no relabelling gains. The run itself uses
    pi sorted in decreasing order and maps the labels back at the end, so the result does not
    depend on the order in which the components of pi are given.

    Args:
        X: locations (N, 2); S: strengths (N,): anything :func:`as_data` accepts; the run is
            in float64 whatever their dtype (see :func:`as_data` for why), on X's device.
        hp: hyperparameters. max_iter: sweeps per restart (>= 1). tol: relative tolerance (>= 0).
        num_init: restarts (>= 1). seed: seeds the k-means++ draws.
        init: start from these parameters instead (then ``num_init`` is ignored).

    Returns:
        :class:`CaviResult` of the best restart (``num_iter`` counts sweeps and relabellings).
    """
    X, S = as_data(X, S)
    check_cavi_settings(max_iter, num_init, tol, seed)
    order, back, canonical = canonical_order(hp)
    G, consts = design(X, S), data_constants(X, S)
    generator = torch.Generator().manual_seed(seed)
    if init is not None:
        init = checked_mean_field(init, X, hp.num_clusters)
        starts = [permute_clusters(init, order)]
    else:
        starts = (initial_mean_field(X, S, canonical, generator) for _ in range(num_init))

    best: CaviResult | None = None
    for q in starts:
        result = _fit_from(G, consts, canonical, q, max_iter, tol)
        finite_elbo(result.elbo, hp)
        if best is None or result.elbo > best.elbo:
            best = result
    return best._replace(q=permute_clusters(best.q, back))
