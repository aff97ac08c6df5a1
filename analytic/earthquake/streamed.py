r"""Exact CAVI for the earthquake mixture over a catalog read in chunks, never held whole.

Every CAVI update of the globals depends on the data only through the sufficient statistics
``r^T G`` (``G = [1, x_1, x_2, s]``, :mod:`analytic.earthquake`), the ELBO is those statistics
plus ``sum_nk r_nk log r_nk`` plus data constants, and ``q(Z_n)`` is a function of the globals
and event n alone. So one sweep is one pass over the chunks: each chunk's responsibilities are
computed from the current globals, reduced to its ``(K, 4)`` moments and its share of the
entropy, and dropped. The sums over chunks are the in-memory sums, so a streamed run equals
:func:`analytic.earthquake.cavi` from the same start up to float64 rounding (the tests ask for
1e-10 relative). Peak memory is one chunk's ``(n, 4)`` design and ``(n, K)`` buffer.

Across processes the sums are the only thing to combine: every sweep ends in one call of
``reduce`` on a flat float64 vector of ``4 K + 1`` numbers (the moments and ``sum_n lse_n``),
the data pass in one of 6; ``reduce`` must return the sum of that vector over the processes
(None: one process).

The entropy of q(Z) uses the identity of :func:`analytic.earthquake.updates.cavi_step_from_design`:
``sum_nk r_nk log r_nk = <r^T G, W^T> - sum_n lse_n`` with ``lse_n = log sum_k exp (G W)_nk``.

The starting responsibilities of a run are uniform (as :func:`initial_mean_field` makes them):
the first entry of the ELBO history is the ELBO at ``r_nk = 1/K`` and the starting globals,
which needs only the data totals ``N, sum_n x_n, sum_n s_n`` of a first pass.

This module is pure torch; it never imports Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch

from analytic.earthquake.labels import canonical_order, label_order, permute_clusters
from analytic.earthquake.params import (
    CaviResult,
    Hyperparameters,
    MeanField,
    as_data,
    check_cavi_settings,
    check_mean_field,
)
from analytic.earthquake.seeding import initial_mean_field
from analytic.earthquake.updates import (
    DataConstants,
    SufficientStats,
    assign,
    assignment_weights,
    design,
    elbo_from_stats,
    finite_elbo,
    locations_from_stats,
    rates_from_stats,
)

__all__ = [
    "Chunks",
    "DataTotals",
    "chunk_responsibilities",
    "data_totals",
    "seeded_globals",
    "streamed_cavi",
    "streamed_elbo",
]

Chunks = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
"""A zero-argument callable returning an iterable of ``(X (n, 2), S (n,))`` chunks; it is
called once per pass, so it must be able to start over (reopen a file, re-slice a tensor)."""

Reduce = Callable[[torch.Tensor], torch.Tensor]


class DataTotals(NamedTuple):
    """What a catalog contributes independently of q (one pass, :func:`data_totals`).

    Attributes:
        num_events: N. sum_x: sum_n x_n, shape (2,). sum_s: sum_n s_n.
        consts: sum_n |x_n|^2 and sum_n log(s_n!) (the ELBO's data constants).
    """

    num_events: int
    sum_x: torch.Tensor
    sum_s: torch.Tensor
    consts: DataConstants


def float64_chunks(
    chunks: Chunks, check: bool = False
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The chunks as float64 tensors; with ``check``, each checked by :func:`as_data` and a bad
    one named by its index and the position of its first event in the stream (the first pass
    checks; the sweeps only convert, as the checks cost more than a sweep's arithmetic)."""
    start = 0
    for index, (X, S) in enumerate(chunks()):
        if check:
            try:
                X, S = as_data(X, S)
            except ValueError as err:
                raise ValueError(f"chunk {index} (events from {start}): {err}") from None
            start += X.shape[0]
        else:
            X = torch.as_tensor(X).to(torch.float64)
            S = torch.as_tensor(S).to(torch.float64)
        yield X, S


def summed(values: list[torch.Tensor], reduce: Reduce | None) -> torch.Tensor:
    """``values`` flattened into one vector and summed across processes by ``reduce`` (None:
    one process), so that a sweep makes one collective call."""
    flat = torch.cat([v.reshape(-1) for v in values])
    return flat if reduce is None else reduce(flat)


def data_totals(chunks: Chunks, reduce: Reduce | None = None) -> DataTotals:
    """One pass for ``N``, ``sum x``, ``sum s``, ``sum |x|^2`` and ``sum log s!`` (float64).

    Raises:
        ValueError: a chunk with bad data (naming the chunk), or no events at all.
    """
    acc = torch.zeros(6, dtype=torch.float64)
    for X, S in float64_chunks(chunks, check=True):
        acc += torch.cat([
            torch.tensor([X.shape[0]], dtype=torch.float64), X.sum(0), S.sum().reshape(1),
            X.pow(2).sum().reshape(1), torch.lgamma(S + 1).sum().reshape(1),
        ])  # fmt: skip
    acc = summed([acc], reduce)
    if acc[0] == 0:
        raise ValueError("the catalog has no events: every chunk is empty")
    return DataTotals(int(acc[0]), acc[1:3], acc[3], DataConstants(acc[4], acc[5]))


def chunk_responsibilities(X, S, hp: Hyperparameters, q: MeanField) -> torch.Tensor:
    r"""``q*(Z_n = k)`` for the events of one chunk, from the globals of q alone (``q.probs``
    is not read): ``r_nk = softmax_k (G W)_nk`` (:func:`analytic.earthquake.update_assignments`).

    Args:
        X: (n, 2); S: (n,); q: a :class:`MeanField` (its ``probs`` may be None).

    Returns:
        probs: (n, K) float64.
    """
    X, S = as_data(X, S)
    return assign(design(X, S), assignment_weights(hp, global_factors(q, hp.num_clusters)))[0]


def global_factors(q: MeanField, num_clusters: int) -> MeanField:
    """q's globals in float64 with ``probs`` None, checked as :func:`check_mean_field` checks
    them (its ``probs`` are not read, so a uniform row stands in for them)."""
    if not isinstance(q, MeanField):
        raise ValueError(f"q must be a MeanField, got {type(q).__name__}")
    fields = []
    for name, value in zip(MeanField._fields[1:], q[1:]):
        if not torch.is_tensor(value):
            raise ValueError(f"q.{name} must be a tensor, got {type(value).__name__}")
        fields.append(value.to(torch.float64))
    uniform = torch.full((1, num_clusters), 1.0 / num_clusters, dtype=torch.float64)
    check_mean_field(MeanField(uniform, *fields), 1, num_clusters)
    return MeanField(None, *fields)


def _pass(chunks: Chunks, totals: DataTotals, W: torch.Tensor, reduce: Reduce | None):
    """One pass with the assignment weights W (4, K): the statistics of ``r = softmax(G W)``
    summed over the events (and the processes), and ``sum_nk r_nk log r_nk``.

    Since each row of r sums to 1, the statistics summed over k are the pass's ``N``,
    ``sum x`` and ``sum s``: they must be the first pass's ``totals``, to rounding (1e-9
    relative, of ``sqrt(N sum |x|^2) >= sum |x|`` for the locations), or the chunks gave other
    events this pass (a file rewritten, a generator that does not start over)."""
    K = W.shape[1]
    moments = torch.zeros(K, 4, dtype=torch.float64)
    sum_lse = torch.zeros(1, dtype=torch.float64)
    for X, S in float64_chunks(chunks):
        G = design(X, S)
        probs, lse = assign(G, W)
        moments += probs.T @ G
        sum_lse += lse.sum()
    flat = summed([moments, sum_lse], reduce)
    moments, sum_lse = flat[: 4 * K].reshape(K, 4), flat[4 * K]
    _check_same_events(moments.sum(0), totals)
    stats = SufficientStats(moments[:, 0], moments[:, 1:3], moments[:, 3])
    return stats, (moments * W.T).sum() - sum_lse


def _check_same_events(seen: torch.Tensor, totals: DataTotals) -> None:
    """``seen = (N, sum x_1, sum x_2, sum s)`` of one pass against the first pass's totals."""
    N = totals.num_events
    scale_x = math.sqrt(N * float(totals.consts.sum_sq_x))
    worst = max(
        abs(float(seen[0]) - N) / N,
        float((seen[1:3] - totals.sum_x).abs().max()) / max(scale_x, 1e-300),
        abs(float(seen[3] - totals.sum_s)) / max(float(totals.sum_s), 1e-300),
    )
    if worst > 1e-9:
        raise ValueError(
            f"the chunks changed between passes: this pass read {float(seen[0]):.0f} events "
            f"with strengths summing to {float(seen[3]):.6g}, the first {N} summing to "
            f"{float(totals.sum_s):.6g}; chunks() must give the same events on every call"
        )


def _sweep(
    chunks: Chunks, totals: DataTotals, hp: Hyperparameters, q: MeanField, reduce: Reduce | None
) -> tuple[MeanField, torch.Tensor, torch.Tensor]:
    """One streamed CAVI sweep: returns (new globals, their ELBO, the counts N_k of the r used)."""
    stats, neg_entropy_z = _pass(chunks, totals, assignment_weights(hp, q), reduce)
    loc, precision = locations_from_stats(stats, hp)
    concentration, rate = rates_from_stats(stats, hp)
    q = MeanField(None, loc, precision, concentration, rate)
    return q, elbo_from_stats(stats, neg_entropy_z, totals.consts, hp, q), stats.counts


def streamed_elbo(
    chunks: Chunks, totals: DataTotals, hp: Hyperparameters, q: MeanField, reduce=None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The exact ELBO of q's globals with the optimal ``q(Z)`` for them
    (``r = softmax(G W)``, :func:`chunk_responsibilities`), in one pass; and the counts N_k.

    This is the ELBO :func:`analytic.earthquake.elbo` gives for ``q`` with ``probs`` replaced by
    :func:`analytic.earthquake.update_assignments` (all constants kept).

    Args:
        chunks: see :data:`Chunks`. totals: :func:`data_totals` of the same chunks.
        q: a :class:`MeanField` (its ``probs`` are not read). reduce: as for
            :func:`streamed_cavi`.

    Returns:
        (ELBO 0-dim, counts (K,)), float64.
    """
    q = global_factors(q, hp.num_clusters)
    stats, neg_entropy_z = _pass(chunks, totals, assignment_weights(hp, q), reduce)
    return elbo_from_stats(stats, neg_entropy_z, totals.consts, hp, q), stats.counts


def _uniform_elbo(totals: DataTotals, hp: Hyperparameters, q: MeanField) -> torch.Tensor:
    """The ELBO at r_nk = 1/K and q's globals (the start of every run)."""
    K = hp.num_clusters
    stats = SufficientStats(
        torch.full((K,), totals.num_events / K, dtype=torch.float64),
        (totals.sum_x / K).expand(K, 2),
        (totals.sum_s / K).expand(K),
    )
    neg_entropy_z = torch.tensor(-totals.num_events * math.log(K), dtype=torch.float64)
    return elbo_from_stats(stats, neg_entropy_z, totals.consts, hp, q)


def seeded_globals(
    sample: tuple[torch.Tensor, torch.Tensor],
    totals: DataTotals,
    hp: Hyperparameters,
    generator: torch.Generator,
) -> MeanField:
    """:func:`analytic.earthquake.initial_mean_field` for a catalog known by a sample and its
    totals: k-means++ centres (and, for non-uniform pi, their labels) from the sample; the
    variance parameters as if each cluster had seen N/K of the whole catalog's events.

    Args:
        sample: ``(X (M, 2), S (M,))`` float64, checked. totals: of the whole catalog.

    Returns:
        :class:`MeanField` with ``probs`` None.
    """
    K = hp.num_clusters
    share = totals.num_events / K
    mean_s = totals.sum_s / totals.num_events
    q = initial_mean_field(*sample, hp, generator)
    return MeanField(
        None,
        q.loc,
        torch.full((K,), hp.rho + hp.tau * share, dtype=torch.float64),
        (hp.alpha + mean_s * share).expand(K).clone(),
        torch.full((K,), hp.beta + share, dtype=torch.float64),
    )


def _fit(chunks, totals, hp, q, max_iter, tol, reduce) -> CaviResult:
    """Sweeps to convergence, then the best relabelling while it gains more than tol * |ELBO|
    (exactly the sweeps of :func:`analytic.earthquake.in_memory.cavi`, with the counts of the
    last sweep)."""
    history = [_uniform_elbo(totals, hp, q)]
    budget = max_iter
    while True:
        for _ in range(budget):
            q, value, counts = _sweep(chunks, totals, hp, q, reduce)
            history.append(value)
            if abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
                converged = True
                break
        else:
            converged = False
        if len(history) > max_iter:
            break
        perm, gain = label_order(counts, hp)
        if not gain > tol * abs(history[-1]):
            break
        q = permute_clusters(q, perm)
        counts = counts[perm]
        history.append(history[-1] + gain)
        budget = max_iter + 1 - len(history)
    return CaviResult(q, history[-1], torch.stack(history), len(history) - 1, converged)


def streamed_cavi(
    chunks: Chunks,
    hp: Hyperparameters,
    *,
    sample: tuple[torch.Tensor, torch.Tensor] | None = None,
    init: MeanField | None = None,
    max_iter: int = 500,
    tol: float = 1e-8,
    num_init: int = 5,
    seed: int = 0,
    reduce: Reduce | None = None,
) -> CaviResult:
    """:func:`analytic.earthquake.cavi` over a catalog read in chunks (module docstring).

    The starts are those of the in-memory driver: ``num_init`` k-means++ seedings drawn from
    ``sample`` (events of the catalog, e.g. a random subset; the whole catalog gives the
    in-memory starts exactly), with the variance parameters set from the whole catalog's N and
    mean strength (:func:`initial_mean_field`); or ``init`` (its ``probs`` are ignored). Runs in
    pi-decreasing order and relabels back, like :func:`cavi`.

    Args:
        chunks: see :data:`Chunks`. hp: hyperparameters.
        sample: ``(X (M, 2), S (M,))`` to seed from; needed unless ``init`` is given.
        init: starting globals. max_iter, tol, num_init, seed: as for :func:`cavi`.
        reduce: sums a flat float64 vector across processes (None: one process).

    Returns:
        :class:`CaviResult` whose ``q.probs`` is None (:func:`chunk_responsibilities` gives
        them for any chunk); ``elbo_history`` and ``num_iter`` as for :func:`cavi`.

    Raises:
        ValueError: bad settings, a bad chunk (named), neither ``sample`` nor ``init``.
    """
    check_cavi_settings(max_iter, num_init, tol, seed)
    if init is None and sample is None:
        raise ValueError("streamed_cavi needs a sample of events to seed from, or init")
    K = hp.num_clusters
    order, back, canonical = canonical_order(hp)
    if init is not None:
        init = global_factors(init, K)
    else:
        sample = as_data(*sample)
    totals = data_totals(chunks, reduce)
    if init is not None:
        starts = [permute_clusters(init, order)]
    else:
        generator = torch.Generator().manual_seed(seed)
        starts = (seeded_globals(sample, totals, canonical, generator) for _ in range(num_init))
    best: CaviResult | None = None
    for q in starts:
        result = _fit(chunks, totals, canonical, q, max_iter, tol, reduce)
        finite_elbo(result.elbo, hp)
        if best is None or result.elbo > best.elbo:
            best = result
    return best._replace(q=permute_clusters(best.q, back))
