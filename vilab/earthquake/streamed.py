"""``vilab earthquake --chunk-size N``: a Parquet catalog fitted without holding it in one place,
in one process or data-parallel under ``torchrun`` (every rank reads its share of the row groups).

* CAVI is streamed (:func:`run_cavi`): exact full-batch sweeps
  (:func:`analytic.earthquake.streamed.streamed_cavi`) or stochastic CAVI, their sufficient
  statistics summed over the ranks.
* SVI (:func:`fit_data_parallel_svi`, with ``--steps >= 1``) fits the model with Z summed out
  in the *model* and :class:`guides.earthquake.GlobalsGuide` (q of the globals alone: a q(Z) would
  grow with N, and its parameters could not be shared by the ranks). Each rank holds its share
  of the events in memory; Pyro's ELBO module is wrapped in ``DistributedDataParallel``, and
  the events' log-likelihood is scaled by the number of processes P
  (``likelihood_scale`` of :func:`ppl_models.earthquake.model`) so that the average of the
  ranks' gradients is the gradient of the whole catalog. Every rank uses the same seed, so the
  draws of the globals agree and P processes take the steps one process takes on the whole
  catalog (to rounding; with ``--subsample-size`` the minibatches differ). The exact ELBO of
  the guide (with the optimal q(Z) for its globals, :func:`streamed_elbo`) is tracked along
  the run by one pass over the shares, summed over the ranks.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch
from pyro.infer import config_enumerate
from tqdm.auto import tqdm

from analytic.earthquake import CaviResult, Hyperparameters, MeanField, as_data
from analytic.earthquake.stochastic import stochastic_cavi
from analytic.earthquake.streamed import (
    chunk_responsibilities,
    data_totals,
    seeded_globals,
    streamed_cavi,
    streamed_elbo,
)
from guides.earthquake import GlobalsGuide
from inference.data import ParquetCatalog, join_pieces
from inference.distributed import Collective
from inference.estimators import get_elbo
from inference.svi import FitResult, fit_svi
from ppl_models.earthquake import MAX_PLATE_NESTING, model
from vilab.flags import catalog_schema

__all__ = [
    "SEED_SAMPLE",
    "StreamedCavi",
    "SviRun",
    "fit_data_parallel_svi",
    "run_cavi",
    "stochastic",
]

# Events drawn from a streamed catalog to seed k-means++ and to draw on the map.
SEED_SAMPLE = 100_000


def stochastic(chunks, hp, sample, args, num_events: int, reduce=None) -> CaviResult:
    """Stochastic CAVI as a :class:`CaviResult`: ``elbo_history`` holds the exact ELBO at each
    evaluation, ``num_iter`` the minibatch steps, ``converged`` None (no stopping rule).
    ``num_events``: this process's events, about (the progress bar's scale; no extra pass)."""
    with tqdm(total=round(args.passes * num_events),
              desc="stochastic CAVI", unit="event", unit_scale=True, disable=args.quiet,
              leave=False, mininterval=0.5) as bar:  # fmt: skip
        result = stochastic_cavi(
            chunks, hp, batch_size=args.batch_size, passes=args.passes, tau0=args.tau0,
            kappa=args.kappa, sample=sample, num_init=args.num_init, seed=args.seed,
            eval_every=args.eval_every, reduce=reduce, progress=bar.update,
        )  # fmt: skip
    return CaviResult(result.q, result.elbo, result.elbo_history, result.num_steps, None)


def _open(args, group: Collective) -> ParquetCatalog:
    """This rank's share of ``--data``; with SVI to come (``--steps >= 1``), ValueError if the
    share holds no row group (a plate of no events is not a Pyro model)."""
    catalog = ParquetCatalog(
        args.data,
        catalog_schema(args),
        chunk_size=args.chunk_size,
        rank=group.rank,
        world_size=group.world_size,
    )
    if args.steps > 0 and not catalog.row_groups:
        raise ValueError(
            f"SVI needs events on every process, and {catalog.path!r} has "
            f"{catalog.num_row_groups} row groups for {group.world_size} processes: run at "
            f"most {catalog.num_row_groups}"
        )
    return catalog


class StreamedCavi(NamedTuple):
    """What :func:`run_cavi` gives: the fit (``q.probs`` None), its seconds, the ``source`` of
    the summary, the seeding sample ``(X (M, 2), S (M,))`` (also what the map shows), the
    mixing weights (K,) of the fit, and the opened catalog (this rank's share)."""

    result: CaviResult
    seconds: float
    source: dict
    sample: tuple[torch.Tensor, torch.Tensor]
    weights: torch.Tensor
    catalog: ParquetCatalog


def run_cavi(args, hp: Hyperparameters, group: Collective) -> StreamedCavi:
    """Streamed CAVI over a Parquet catalog read ``--chunk-size`` events at a time, seeded
    from a uniform sample of at most :data:`SEED_SAMPLE` of its events. Under torchrun each
    rank reads its share of the row groups and the statistics are summed over the ranks."""
    catalog = group.agree(lambda: _open(args, group))
    start = time.perf_counter()
    # the first pass checks every row of this rank's share: a bad row stops every rank
    pieces = group.agree(lambda: catalog.sample_pieces(SEED_SAMPLE, seed=args.seed))
    sample = join_pieces([p for ps in group.gather(pieces) for p in ps], args.data)
    reduce = group.all_reduce_sum
    if args.cavi == "exact":
        result = streamed_cavi(
            catalog.chunks, hp, sample=sample, max_iter=args.max_iter, tol=args.tol,
            num_init=args.num_init, seed=args.seed, reduce=reduce,
        )  # fmt: skip
    else:
        share = catalog.num_rows / group.world_size  # rows before any are dropped
        result = stochastic(catalog.chunks, hp, sample, args, share, reduce)
    counts = torch.zeros(hp.num_clusters, dtype=torch.float64)
    for X, S in catalog.chunks():
        counts += chunk_responsibilities(X, S, hp, result.q).sum(0)
    dropped = torch.tensor([catalog.num_invalid, catalog.num_outside], dtype=torch.float64)
    counts, dropped = reduce(counts), reduce(dropped).long().tolist()
    seconds = time.perf_counter() - start
    source = {"data": str(args.data), "rows": catalog.num_rows, "invalid_dropped": dropped[0],
              "outside_bbox": dropped[1], "chunk_size": args.chunk_size,
              "processes": group.world_size}  # fmt: skip
    return StreamedCavi(result, seconds, source, sample, counts / counts.sum(), catalog)


class SviRun(NamedTuple):
    """An SVI fit as the summary reads it.

    Attributes:
        guide: the fitted guide. fit: :class:`inference.svi.FitResult` (this rank's view: the
            ELBO history is the ranks' mean, the same on every rank).
        exact_steps, exact_values: the steps at which the exact ELBO was measured, and it.
        q: the fit as a :class:`MeanField` on the CPU, ``probs`` over the events of the map.
        elbo: the exact ELBO of ``q`` over the whole catalog. weights: (K,) its mixing weights.
    """

    guide: torch.nn.Module
    fit: FitResult
    exact_steps: list
    exact_values: list
    q: MeanField
    elbo: float
    weights: torch.Tensor


def svi_loss(args, jit: bool):
    """The estimator of ``--estimator`` (``stl`` on the ``enum`` base: Z is summed out), with
    ``--particles`` vectorised, compiled if ``jit``."""
    return get_elbo(
        args.estimator,
        jit=jit,
        **({"base": "enum"} if args.estimator == "stl" else {}),
        num_particles=args.particles,
        vectorize_particles=args.particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


def fit_data_parallel_svi(
    streamed: StreamedCavi,
    hp: Hyperparameters,
    args,
    group: Collective,
    device: torch.device,
    jit: bool,
) -> SviRun:
    """SVI of the model with Z summed out, data-parallel over the ranks (module docstring),
    from the k-means++ seeding of CAVI's first restart. ``--subsample-size B`` is per process:
    each rank's step then uses B of its n_r events, scaled by P n_r / B."""
    # a share whose every row is dropped (--bbox, --drop-invalid) stops every rank
    X, S = group.agree(streamed.catalog.load)[:2]
    reduce = group.all_reduce_sum
    totals = data_totals(lambda: [(X, S)], reduce)
    init = seeded_globals(as_data(*streamed.sample), totals, hp,
                          torch.Generator().manual_seed(args.seed))  # fmt: skip
    guide = GlobalsGuide.for_svi(init, hp).to(device)
    loss = svi_loss(args, jit)
    exact_steps, exact_values = [], []

    def on_cpu(guide_) -> MeanField:  # the exact ELBO reads the shares where they are: the CPU
        return MeanField(None, *(t.cpu() for t in guide_.mean_field()[1:]))

    def track_exact_elbo(step, guide_):
        exact_steps.append(step)
        value, _ = streamed_elbo(lambda: [(X, S)], totals, hp, on_cpu(guide_), reduce)
        exact_values.append(value.item())

    B = args.subsample_size
    fit = fit_svi(
        config_enumerate(model), guide, loss, X.to(device), S.to(device), hp,
        subsample_size=B if B is not None and B < X.shape[0] else None,
        likelihood_scale=float(group.world_size), num_steps=args.steps, lr=args.lr,
        lr_final=args.lr_final, seed=args.seed, progress=not args.quiet,
        callback=track_exact_elbo, callback_every=max(1, args.steps // 200), group=group,
    )  # fmt: skip
    q = on_cpu(guide)
    value, counts = streamed_elbo(lambda: [(X, S)], totals, hp, q, reduce)
    q = q._replace(probs=chunk_responsibilities(*streamed.sample, hp, q))
    return SviRun(guide, fit, exact_steps, exact_values, q, value.item(), counts / counts.sum())
