r"""Stochastic CAVI for the earthquake mixture (Hoffman, Blei, Wang & Paisley 2013, "Stochastic
Variational Inference", JMLR 14, §2.4 and Algorithm 1).

The globals of the mean field are exponential families whose natural parameters are affine in
the data's sufficient statistics (:mod:`analytic.earthquake`, ``M = r^T [1, x_1, x_2, s]``)::

    q(mu_k) = N(m_k, p_k^{-1} I):   eta_k = (p_k m_k, p_k) = (rho nu + tau M_kx, rho + tau M_k1)
    q(l_k)  = Gamma(a_k, b_k):      (a_k, b_k)            = (alpha + M_ks, beta + M_k1)

(for the Gaussian the natural parameters proper are ``(p m, -p / 2)``, and for the Gamma
``(a - 1, -b)``: affine images of the pairs above, so moving one moves the other the same way).
Step t draws a minibatch B_t of events, sets its local optimum ``r_n = q*(Z_n)`` from the current
globals, computes the optimum ``eta_hat`` the globals would have if the catalog were ``N / |B_t|``
copies of the minibatch (its statistics scaled by that factor; Hoffman et al. eq. 21-23), and
moves toward it::

    eta <- (1 - rho_t) eta + rho_t eta_hat,      rho_t = (t + tau_0)^(-kappa),  t = 1, 2, ...

This is a natural-gradient step of length rho_t on the ELBO (their eq. 24); with
``sum rho_t = inf`` and ``sum rho_t^2 < inf`` (kappa in (0.5, 1]) the steps converge to a local
optimum (Robbins & Monro 1951). tau_0 >= 0 keeps rho_t <= 1, so the natural parameters stay
in their domain (a convex combination of valid ones).

Minibatches: each process reads its chunks in order, shuffles each chunk with the run's
generator and cuts it into minibatches of ``batch_size`` events (the events left over at the
end of a chunk open the next minibatch; after the last chunk the stream starts over). Events
within a chunk are therefore drawn without replacement in random order, and chunks in file
order: a catalog sorted by time should be written with row groups in random order, or read
with chunks large enough to mix. Across processes the minibatch statistics are summed, so one
step uses ``P * batch_size`` events and the scale is ``N / (P * batch_size)``.

The ELBO of the result is exact: one streamed pass with ``r = q*(Z | globals)``
(:func:`analytic.earthquake.streamed.streamed_elbo`), after every ``eval_every`` passes and at
the end.

This module is pure torch; it never imports Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from analytic._validate import nonnegative, number, positive
from analytic.earthquake.labels import canonical_order, label_order, permute_clusters
from analytic.earthquake.params import Hyperparameters, MeanField, as_data, check_cavi_settings
from analytic.earthquake.streamed import (
    Chunks,
    Reduce,
    data_totals,
    float64_chunks,
    global_factors,
    seeded_globals,
    streamed_elbo,
    summed,
)
from analytic.earthquake.updates import (
    SufficientStats,
    assign,
    assignment_weights,
    design,
    finite_elbo,
    locations_from_stats,
    rates_from_stats,
)

__all__ = ["StochasticResult", "step_size", "stochastic_cavi"]


class StochasticResult(NamedTuple):
    """What :func:`stochastic_cavi` returns.

    Attributes:
        q: :class:`MeanField` of the globals (``probs`` None; they are
            :func:`analytic.earthquake.streamed.chunk_responsibilities` of any chunk).
        elbo: the exact ELBO of q with its optimal q(Z), 0-dim float64.
        passes: (E,) float64, the passes over the catalog (events seen / N) at each evaluation.
        elbo_history: (E,) float64, the exact ELBO at each evaluation.
        num_steps: minibatch steps taken.
    """

    q: MeanField
    elbo: torch.Tensor
    passes: torch.Tensor
    elbo_history: torch.Tensor
    num_steps: int


def step_size(t: int, tau0: float, kappa: float) -> float:
    """``rho_t = (t + tau0)^(-kappa)``, the length of step t = 1, 2, ..."""
    return (t + tau0) ** (-kappa)


def _check_settings(batch_size, passes, tau0, kappa, eval_every) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    positive("passes", passes)
    nonnegative("tau0", tau0)
    kappa = number("kappa", kappa, "a number in (0.5, 1]")
    if not 0.5 < kappa <= 1:
        raise ValueError(
            f"kappa must be in (0.5, 1] (Robbins-Monro: sum rho_t = inf, sum rho_t^2 < inf), "
            f"got {kappa!r}"
        )
    if eval_every is not None:
        positive("eval_every", eval_every)


def _minibatches(
    chunks: Chunks, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless minibatches of ``batch_size`` events as (B, 4) designs (module docstring); none
    but empty ones (0, 4) if the chunks hold no event."""
    left = torch.zeros(0, 4, dtype=torch.float64)
    while True:
        seen = 0
        for X, S in float64_chunks(chunks):
            seen += X.shape[0]
            G = design(X, S)
            G = torch.cat([left, G[torch.randperm(G.shape[0], generator=generator)]])
            stop = G.shape[0] - G.shape[0] % batch_size
            for start in range(0, stop, batch_size):
                yield G[start : start + batch_size]
            left = G[stop:]
        if seen == 0:  # this process's share is empty (fewer row groups than processes):
            while True:  # it takes part in every step with no events
                yield left


def _natural(q: MeanField) -> torch.Tensor:
    """The globals as one (K, 5) array ``[p m, p, a, b]``, affine in the natural parameters."""
    return torch.cat(
        [q.precision[:, None] * q.loc, q.precision[:, None], q.concentration[:, None],
         q.rate[:, None]], dim=1,
    )  # fmt: skip


def _from_natural(eta: torch.Tensor) -> MeanField:
    precision = eta[:, 2]
    return MeanField(None, eta[:, :2] / precision[:, None], precision, eta[:, 3], eta[:, 4])


def _target(moments: torch.Tensor, scale: torch.Tensor, hp: Hyperparameters) -> torch.Tensor:
    """``eta_hat``: the CAVI optimum of the globals for the statistics ``scale * moments``."""
    M = scale * moments
    stats = SufficientStats(M[:, 0], M[:, 1:3], M[:, 3])
    loc, precision = locations_from_stats(stats, hp)
    concentration, rate = rates_from_stats(stats, hp)
    return _natural(MeanField(None, loc, precision, concentration, rate))


def stochastic_cavi(
    chunks: Chunks,
    hp: Hyperparameters,
    *,
    batch_size: int,
    passes: float = 1.0,
    tau0: float = 1.0,
    kappa: float = 0.7,
    sample: tuple[torch.Tensor, torch.Tensor] | None = None,
    init: MeanField | None = None,
    num_init: int = 1,
    seed: int = 0,
    eval_every: float | None = None,
    reduce: Reduce | None = None,
    progress: Callable[[int], None] | None = None,
) -> StochasticResult:
    """Stochastic CAVI of the earthquake mixture (module docstring), over chunks.

    The run starts from ``init`` or from ``num_init`` k-means++ seedings of ``sample``
    (:func:`analytic.earthquake.streamed.seeded_globals` with ``seed``; the best run wins),
    runs in pi-decreasing label order as :func:`analytic.earthquake.cavi` does, takes
    ``ceil(passes * N / B)`` steps (``B`` the events per step over all processes), and at
    every evaluation applies the relabelling that most raises the ELBO
    (:func:`analytic.earthquake.label_order` for the evaluation's counts; a relabelling
    changes only the E log p(Z) term).

    Args:
        chunks: see :data:`analytic.earthquake.streamed.Chunks`. hp: hyperparameters.
        batch_size: events per minibatch in this process.
        passes: how much data to use, in passes over the catalog (> 0).
        tau0, kappa: the step sizes ``rho_t = (t + tau0)^(-kappa)``, tau0 >= 0,
            kappa in (0.5, 1].
        sample, init: the start, as for :func:`analytic.earthquake.streamed.streamed_cavi`.
        num_init: runs from that many seedings of ``sample``; the best exact ELBO wins.
        seed: seeds the starts and the shuffling.
        eval_every: the exact ELBO also after every this many passes (None: at the end only).
        reduce: sums a flat float64 vector across processes (None: one process).
        progress: called with the number of events (this process's) after every step.

    Returns:
        :class:`StochasticResult`.

    Raises:
        ValueError: a bad setting (named), a bad chunk, neither ``sample`` nor ``init``.
    """
    _check_settings(batch_size, passes, tau0, kappa, eval_every)
    check_cavi_settings(1, num_init, 0.0, seed)
    if init is None and sample is None:
        raise ValueError("stochastic_cavi needs a sample of events to seed from, or init")
    K = hp.num_clusters
    order, back, canonical = canonical_order(hp)
    init = global_factors(init, K) if init is not None else None
    sample = as_data(*sample) if init is None else None
    totals = data_totals(chunks, reduce)
    generator = torch.Generator().manual_seed(seed)
    if init is not None:
        starts = [permute_clusters(init, order)]
    else:
        starts = (seeded_globals(sample, totals, canonical, generator) for _ in range(num_init))
    settings = (batch_size, passes, tau0, kappa, eval_every)
    best = None
    for q in starts:
        result = _run(chunks, totals, canonical, q, settings, generator, reduce, progress)
        finite_elbo(result.elbo, hp)
        if best is None or result.elbo > best.elbo:
            best = result
    return best._replace(q=permute_clusters(best.q, back))


def _run(chunks, totals, hp, q, settings, generator, reduce, progress) -> StochasticResult:
    """One stochastic run from the globals q (labels in hp's order)."""
    batch_size, passes, tau0, kappa, eval_every = settings
    K = hp.num_clusters
    eta = _natural(q)
    batches = _minibatches(chunks, batch_size, generator)
    num_steps = None
    seen = 0  # events used, over all processes
    next_eval = eval_every if eval_every is not None else math.inf
    marks, history = [], []

    def evaluate() -> None:
        """The exact ELBO, after the relabelling that most raises it (applied to eta)."""
        nonlocal eta
        value, counts = streamed_elbo(chunks, totals, hp, _from_natural(eta), reduce)
        perm, gain = label_order(counts, hp)
        if gain > 0:
            eta, value = eta[perm], value + gain
        marks.append(seen / totals.num_events)
        history.append(value)

    t = 0
    while num_steps is None or t < num_steps:
        G = next(batches)
        probs, _ = assign(G, assignment_weights(hp, _from_natural(eta)))
        moments = summed([probs.T @ G, torch.tensor([float(G.shape[0])])], reduce)
        events = moments[-1]
        if num_steps is None:  # the first step tells the events per step over all processes
            num_steps = max(1, math.ceil(passes * totals.num_events / float(events)))
        t += 1
        rho = step_size(t, tau0, kappa)
        target = _target(moments[:-1].reshape(K, 4), totals.num_events / events, hp)
        eta = (1.0 - rho) * eta + rho * target
        seen += int(events)
        if progress is not None:
            progress(G.shape[0])
        if seen / totals.num_events >= next_eval and t < num_steps:
            evaluate()
            next_eval += eval_every
    evaluate()
    return StochasticResult(
        _from_natural(eta),
        history[-1],
        torch.tensor(marks, dtype=torch.float64),
        torch.stack(history),
        t,
    )
