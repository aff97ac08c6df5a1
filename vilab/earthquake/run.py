"""``vilab earthquake``: closed-form CAVI and Pyro SVI on the same catalog, side by side.

Both fits are scored by the same closed-form ELBO (:func:`analytic.earthquake.elbo`) at their
variational parameters, and SVI's clusters are matched to CAVI's by the Hungarian algorithm on
the distances between cluster means (their labels are arbitrary).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from analytic.earthquake import (
    Hyperparameters,
    MeanField,
    cavi,
    check_data,
    elbo,
    initial_mean_field,
    permute_clusters,
)
from analytic.earthquake.streamed import chunk_responsibilities
from guides.earthquake import EarthquakeGuide
from inference.data import ParquetCatalog, is_parquet, load_catalog
from inference.distributed import Collective, launched, process_group
from inference.svi import fit_svi
from ppl_models.earthquake import model, simulate
from vilab.devices import resolve_device
from vilab.earthquake import diagnostics as earthquake_diagnostics
from vilab.earthquake import streamed
from vilab.earthquake.auto import compare as auto_cavi_beside_hand
from vilab.earthquake.flags import check_arguments, hyperparameters
from vilab.flags import (
    catalog_schema,
    default_backend,
    jit_mode,
)
from vilab.io import atomic_write_json
from vilab.matching import match_clusters
from vilab.report import format_table

__all__ = ["run"]


def _cluster_summary(q: MeanField, weights: torch.Tensor) -> dict:
    """Means, their posterior sd, E[rate] and the share of events of each cluster."""
    return {
        "means": q.loc.tolist(),
        "mean_sd": q.precision.rsqrt().tolist(),
        "rates": (q.concentration / q.rate).tolist(),
        "weights": weights.tolist(),
    }


def _load_data(args, hp: Hyperparameters):
    """The catalog of ``--data``, or one simulated from the model: (X, S, source, truth)."""
    if args.data is None:
        X, S, _, mu, lam = simulate(hp, args.num_events, seed=args.seed)
        source = {"simulated": True, "num_events": args.num_events, "seed": args.seed}
        truth = {"means": mu.tolist(), "rates": lam.tolist()}
    else:
        read = _parquet_catalog if is_parquet(args.data) else load_catalog
        catalog = read(args.data, catalog_schema(args))
        X, S, truth = catalog.X, catalog.S, None
        source = {
            "data": str(args.data),
            "rows": catalog.num_rows,
            "invalid_dropped": catalog.num_invalid,
            "outside_bbox": catalog.num_outside,
        }
    check_data(X, S)
    if args.subsample_size is not None and args.subsample_size > X.shape[0]:
        raise ValueError(f"--subsample-size {args.subsample_size} exceeds the {X.shape[0]} events")
    return X, S, source, truth


def _parquet_catalog(path, schema):
    """A whole Parquet catalog in memory (the in-memory fit; ``--chunk-size`` streams it)."""
    return ParquetCatalog(path, schema).load()


def _fit_cavi(X, S, hp, args):
    """Closed-form CAVI (``--cavi``), the best of ``--num-init`` restarts, on a catalog in
    memory: (CaviResult with q.probs, seconds)."""
    start = time.perf_counter()
    if args.cavi == "exact":
        result = cavi(
            X, S, hp, max_iter=args.max_iter, tol=args.tol, num_init=args.num_init, seed=args.seed
        )
    else:
        result = streamed.stochastic(lambda: [(X, S)], hp, (X, S), args, X.shape[0])
        q = result.q._replace(probs=chunk_responsibilities(X, S, hp, result.q))
        result = result._replace(q=MeanField(*(t.to(X.device) for t in q)))
    return result, time.perf_counter() - start


# Up to this (events per step) x K, the TorchScript loss is faster than eager; above it, Pyro's
# traced enumeration masks every cost term and only the whole step is faster (see --jit's help).
JIT_MAX_CELLS = 200_000
# Above JIT_MAX_CELLS, the whole step is the default from this many steps on: at N = 10^5,
# K = 10 it saves 86 ms a step (24.5 against 110.6 ms eager, benchmarks/svi_step.py) for a
# compile of 14 s from an empty cache, so it pays from about 160 steps.
LARGE_STEP_MIN_STEPS = 500


def _use_jit(args, num_events: int) -> bool | str:
    """``get_elbo``'s ``jit``: ``--jit``/``--no-jit``/``--jit-backend`` if given, else by the
    step's N x K and the number of steps (the measured defaults above)."""
    if (args.subsample_size or num_events) * args.k <= JIT_MAX_CELLS:
        return jit_mode(args, default_backend(args.steps))
    return jit_mode(args, "step" if args.steps >= LARGE_STEP_MIN_STEPS else False)


def _fit_svi(X, S, hp, args) -> streamed.SviRun:
    """Pyro SVI of the mean field (Z in the guide) on a catalog in memory, from the k-means++
    seeding of CAVI's first restart, recording the closed-form ELBO of the guide about 200
    times along the run."""
    init = initial_mean_field(X, S, hp, torch.Generator().manual_seed(args.seed))
    guide = EarthquakeGuide.for_svi(init, hp, enumerate=args.estimator in ("enum", "stl"))
    loss = streamed.svi_loss(args, _use_jit(args, X.shape[0]))
    exact_steps, exact_values = [], []

    def track_exact_elbo(step, guide_):
        exact_steps.append(step)
        exact_values.append(elbo(X, S, hp, guide_.mean_field()).item())

    fit = fit_svi(
        model, guide, loss, X, S, hp,
        subsample_size=args.subsample_size, num_steps=args.steps, lr=args.lr,
        lr_final=args.lr_final, seed=args.seed, progress=not args.quiet,
        callback=track_exact_elbo, callback_every=max(1, args.steps // 200),
    )  # fmt: skip
    q = MeanField(*(t.cpu() for t in guide.mean_field()))
    value = elbo(X.cpu(), S.cpu(), hp, q).item()
    return streamed.SviRun(guide, fit, exact_steps, exact_values, q, value, q.probs.mean(0))


def _summary(num_events, hp, source, truth, args, cavi_fit: dict, svi_fit, auto=None) -> dict:
    """The JSON summary: the data, the hyperparameters, and each fit (``svi`` null when
    ``--steps 0``)."""
    summary = {
        "n": num_events,
        "k": hp.num_clusters,
        "source": source,
        "hyperparameters": {
            "tau": hp.tau,
            "rho": hp.rho,
            "nu": list(hp.nu),
            "alpha": hp.alpha,
            "beta": hp.beta,
            "mixing": list(hp.mixing),
        },
        "cavi": cavi_fit,
        "svi": svi_fit,
    }
    if auto is not None:
        summary["auto_cavi"] = auto
    if truth is not None:
        summary["truth"] = truth
    return summary


def _print_report(summary: dict, args) -> None:
    """The one-screen summary: ELBO and cost per method, the gap, and cluster by cluster."""
    c, s = summary["cavi"], summary["svi"]
    rows = [
        ["method", "ELBO", "iterations", "seconds"],
        [f"CAVI ({c['method']})", f"{c['elbo']:.3f}", str(c["iterations"]), f"{c['seconds']:.2f}"],
    ]
    header = ["k", "CAVI mean (lon, lat)", "CAVI rate", "CAVI weight"]
    if s is not None:
        rows.append([f"SVI ({args.estimator})", f"{s['elbo']:.3f}", str(s["iterations"]),
                     f"{s['seconds']:.2f}"])  # fmt: skip
        header += ["SVI mean (lon, lat)", "|diff|", "SVI rate", "SVI weight"]
    cluster_rows = [header]
    for k in range(summary["k"]):
        row = [str(k), "({:.2f}, {:.2f})".format(*c["means"][k]), f"{c['rates'][k]:.3f}",
               f"{c['weights'][k]:.3f}"]  # fmt: skip
        if s is not None:
            row += [
                "({:.2f}, {:.2f})".format(*s["means"][k]),
                f"{math.dist(c['means'][k], s['means'][k]):.3f}",
                f"{s['rates'][k]:.3f}",
                f"{s['weights'][k]:.3f}",
            ]
        cluster_rows.append(row)
    origin = "simulated" if "truth" in summary else args.data
    streamed = f", streamed in chunks of {args.chunk_size}" if args.chunk_size else ""
    print(
        f"Earthquake mixture: N={summary['n']} events, K={summary['k']} clusters "
        f"({origin}{streamed})"
    )
    a = summary.get("auto_cavi")
    if a is not None:
        seconds = a["analysis_seconds"] + a["sweeps"] * a["seconds_per_sweep"]
        rows.append(["auto-CAVI (from the Pyro model)", f"{a['elbo']:.3f}", str(a["sweeps"]),
                     f"{seconds:.2f}"])  # fmt: skip
    print(format_table(rows))
    if a is not None:
        print(
            f"auto-CAVI vs hand CAVI from one start: ELBO {a['elbo']:.6f} vs {a['hand_elbo']:.6f} "
            f"(relative difference {a['elbo_relative_difference']:.1e}), parameters within "
            f"{a['max_relative_parameter_difference']:.1e} relative; "
            f"{1e3 * a['seconds_per_sweep']:.2f} vs {1e3 * a['hand_seconds_per_sweep']:.2f} "
            "ms per sweep"
        )
    if s is not None:
        gap = c["elbo"] - s["elbo"]
        print(f"ELBO gap CAVI - SVI: {gap:.3f} nats ({100 * gap / abs(c['elbo']):.4f}%)")
    print(format_table(cluster_rows))


def run(args: argparse.Namespace) -> dict:
    """Fit by CAVI and SVI, print the comparison, write the files; return the summary dict.
    Under torchrun (several processes) the catalog is streamed, each rank reading its share,
    and rank 0 alone prints and writes."""
    hp = hyperparameters(args)
    check_arguments(args)
    device = resolve_device(args.device)
    if launched() and args.chunk_size is None:
        raise ValueError(
            "under torchrun, vilab earthquake streams a Parquet catalog over the processes: "
            "give --data FILE.parquet --chunk-size N"
        )
    if launched() and (args.jit or args.jit_backend):
        raise ValueError("--jit compiles one process's loss: drop it under torchrun")
    with process_group(device, args.timeout) as group:
        if group.rank != 0:
            args.quiet = True
        summary, write = _run(args, hp, device, group)
        if group.rank == 0:
            write()
    return summary


def _run(args, hp: Hyperparameters, device: torch.device, group: Collective):
    """The fits and the summary; returns (summary, a function that prints and writes)."""
    out_dir = Path(args.out)
    if args.chunk_size is not None:
        cavi_run = streamed.run_cavi(args, hp, group)
        cavi_result, cavi_seconds, source, (X, S), weights = cavi_run[:5]
        num_events, truth = int(source["rows"] - source["invalid_dropped"]
                                - source["outside_bbox"]), None  # fmt: skip
        # the map shows the sample, coloured by its responsibilities
        q_cavi = cavi_result.q._replace(probs=chunk_responsibilities(X, S, hp, cavi_result.q))
    else:
        X, S, source, truth = _load_data(args, hp)
        num_events = int(X.shape[0])
        cavi_result, cavi_seconds = _fit_cavi(X.to(device), S.to(device), hp, args)
        q_cavi = MeanField(*(t.cpu() for t in cavi_result.q))
        weights = q_cavi.probs.mean(0)
    cavi_fit = {"method": args.cavi, "elbo": cavi_result.elbo.item(),
                "iterations": cavi_result.num_iter,
                "converged": cavi_result.converged, "seconds": cavi_seconds,
                **({"passes": args.passes, "batch_size": args.batch_size, "tau0": args.tau0,
                    "kappa": args.kappa, "evaluations": len(cavi_result.elbo_history)}
                   if args.cavi == "stochastic" else {}),
                **_cluster_summary(q_cavi, weights)}  # fmt: skip
    fits = {"CAVI": q_cavi}
    svi = svi_fit = None
    if args.steps > 0:
        if args.chunk_size is not None:
            jit = group.world_size == 1 and _use_jit(args, cavi_run.catalog.num_rows)
            svi = streamed.fit_data_parallel_svi(cavi_run, hp, args, group, device, jit)
        else:
            jit = _use_jit(args, num_events)
            svi = _fit_svi(X.to(device), S.to(device), hp, args)
        # SVI's labels are arbitrary: match its clusters to CAVI's before comparing them
        perm = match_clusters(q_cavi.loc, svi.q.loc)
        fits["SVI"] = q_svi = permute_clusters(svi.q, perm)
        svi.guide.permute_clusters_(perm)  # its draws (diagnostics) under the same labels
        svi_fit = {"elbo": svi.elbo, "iterations": svi.fit.num_steps,
                   "estimator": args.estimator, "jit": bool(jit), "jit_backend": jit or None,
                   "guide": "mean field" if args.chunk_size is None else "globals (Z summed out "
                            "in the model)",
                   "compile_seconds": svi.fit.compile_seconds,
                   "seconds": svi.fit.seconds,  # the exact-ELBO tracking is inside; a small share
                   "final_mc_elbo": svi.fit.elbo_history[-1].item(),
                   **_cluster_summary(q_svi, svi.weights[perm])}  # fmt: skip
    auto = None
    if args.method == "auto-cavi":
        auto = auto_cavi_beside_hand(X.to(device), S.to(device), hp, args)
    summary = _summary(num_events, hp, source, truth, args, cavi_fit, svi_fit, auto)

    def write() -> None:
        _print_report(summary, args)

        from vilab.earthquake.plots import plot_elbo_traces, plot_map  # matplotlib: lazily

        written = [
            plot_elbo_traces(
                out_dir / "elbo_trace.png",
                cavi_result.elbo_history.cpu().numpy(),
                *(
                    (svi.exact_steps, svi.exact_values, svi.fit.elbo_history.numpy())
                    if svi is not None
                    else ([], [], [])
                ),
            ),  # fmt: skip
            plot_map(out_dir / "map.png", X, S, fits, hp.tau),
            atomic_write_json(out_dir / "summary.json", summary),
        ]
        if args.diagnostics:
            svi.guide.enumerate = True  # Z is summed out in NUTS's model and the PSIS weights
            written += earthquake_diagnostics.report(
                out_dir, svi.guide, X.to(device), S.to(device), hp, svi.fit.elbo_history, args
            )
        if args.json:
            written.append(atomic_write_json(args.json, summary))
        print("wrote: " + ", ".join(str(p) for p in written))

    return summary, write
