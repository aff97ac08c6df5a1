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
from analytic.earthquake_stream import chunk_responsibilities
from guides.earthquake import EarthquakeGuide
from inference.catalog import load_catalog, parse_bbox
from inference.distributed import Collective, launched, process_group
from inference.fit import fit_svi
from inference.parquet_catalog import ParquetCatalog, is_parquet
from ppl_models.earthquake import model, simulate
from vilab import diagnostics
from vilab.devices import resolve_device
from vilab.earthquake import diagnostics as earthquake_diagnostics
from vilab.earthquake import streamed
from vilab.earthquake.auto import compare as auto_cavi_beside_hand
from vilab.flags import (
    add_jit_argument,
    add_output_arguments,
    argparse_type,
    check_floats,
    check_ints,
    check_output_paths,
    jit_mode,
    weights,
)
from vilab.io import atomic_write_json
from vilab.matching import match_clusters
from vilab.report import format_table

__all__ = ["add_arguments", "add_model_arguments", "hyperparameters", "run"]


def _pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers 'x,y', got {text!r}")
    try:
        pair = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'x,y', got {text!r}") from None
    if not all(math.isfinite(v) for v in pair):
        raise argparse.ArgumentTypeError(f"expected two finite numbers 'x,y', got {text!r}")
    return pair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vilab earthquake`` (shared by ``examples/earthquake.py``)."""
    _add_data_arguments(parser)
    add_model_arguments(parser)
    _add_fit_arguments(parser)
    add_output_arguments(
        parser, "earthquake", "elbo_trace.png, map.png and summary.json",
        "simulation, k-means++ and SVI",
    )  # fmt: skip
    diagnostics.add_arguments(parser)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (default: a catalog simulated from the model)")
    data.add_argument(
        "--data",
        metavar="FILE",
        help="earthquake catalog: CSV with a header row, or Parquet (vilab catalog convert or "
        "simulate; told apart by content, not by suffix)",
    )
    data.add_argument(
        "--chunk-size",
        type=int,
        metavar="N",
        help="stream a Parquet --data N events at a time: CAVI (exact: the same sweeps as in "
        "memory) with memory bounded by the chunk, not the catalog; SVI (--steps >= 1) then "
        "fits q of the globals with Z summed out in the model, on the events in memory (under "
        "torchrun: each process's share, gradients averaged by DistributedDataParallel). "
        "Needed under torchrun (default: read the whole catalog)",
    )
    data.add_argument(
        "--num-events",
        type=int,
        default=1000,
        help="events to simulate when no --data is given (default 1000)",
    )
    data.add_argument("--lat-col", help="latitude column (default: Latitude/lat, any case)")
    data.add_argument("--lon-col", help="longitude column (default: Longitude/lon, any case)")
    data.add_argument("--mag-col", help="magnitude column (default: Magnitude/mag, any case)")
    data.add_argument(
        "--strength-scale",
        type=float,
        default=1.0,
        help="strength S = round(scale * magnitude), the Poisson count "
        "(default 1: M 5.5-9.1 -> 6-9; 10 resolves tenths)",
    )
    data.add_argument(
        "--bbox",
        type=argparse_type(parse_bbox),
        metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
        help="keep only events inside this box (degrees)",
    )
    data.add_argument(
        "--drop-invalid",
        action="store_true",
        help="skip rows with missing or out-of-range values instead of stopping",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model_ = parser.add_argument_group("model (locations in degrees)")
    model_.add_argument("--k", type=int, default=3, help="number of clusters K (default 3)")
    model_.add_argument(
        "--tau",
        type=float,
        default=0.01,
        help="precision of events around their centre, 1/deg^2 (default 0.01: sd 10 deg)",
    )
    model_.add_argument(
        "--rho",
        type=float,
        default=1e-3,
        help="prior precision of the centres (default 1e-3: sd ~32 deg)",
    )
    model_.add_argument(
        "--mixing",
        type=argparse_type(weights),
        metavar="W1,...,WK",
        help="mixing weights pi of the K clusters, normalised to sum to 1 (default uniform); "
        "the fit does not depend on their order",
    )
    model_.add_argument(
        "--nu",
        type=_pair,
        default=(0.0, 0.0),
        metavar="LON,LAT",
        help="prior mean of the centres (default 0,0)",
    )
    model_.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="Gamma prior shape of the Poisson rates (default 1)",
    )
    model_.add_argument(
        "--beta",
        type=float,
        default=0.1,
        help="Gamma prior rate of the Poisson rates (default 0.1: mean 10)",
    )


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    fit = parser.add_argument_group("fitting")
    fit.add_argument(
        "--method",
        choices=["cavi", "auto-cavi"],
        default="cavi",
        help="cavi = the hand-written CAVI (default); auto-cavi = also the CAVI that "
        "inference.cavi.auto_cavi derives from the Pyro model, run beside the hand-written one "
        "from the same k-means++ start (--max-iter, --tol), with their agreement printed",
    )
    fit.add_argument(
        "--cavi",
        choices=["exact", "stochastic"],
        default="exact",
        help="exact = full-batch CAVI, every sweep over all events (default); stochastic = "
        "stochastic CAVI (Hoffman et al. 2013): natural-gradient steps from minibatches of "
        "--batch-size events, rho_t = (t + --tau0)^-kappa, for --passes passes; its exact "
        "ELBO is measured by one more pass at the end",
    )
    fit.add_argument("--max-iter", type=int, default=500, help="CAVI sweeps per restart (500)")
    fit.add_argument(
        "--num-init",
        type=int,
        default=5,
        help="CAVI restarts from k-means++ seeds; the best ELBO is kept (5)",
    )
    fit.add_argument(
        "--tol",
        type=float,
        default=1e-8,
        help="CAVI stops when a sweep gains <= tol * |ELBO| (1e-8)",
    )
    fit.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="stochastic CAVI: events per minibatch, per process (default 1000)",
    )
    fit.add_argument(
        "--passes",
        type=float,
        default=1.0,
        help="stochastic CAVI: passes over the catalog, may be fractional (default 1)",
    )
    fit.add_argument(
        "--tau0", type=float, default=1.0, help="stochastic CAVI: delay tau0 >= 0 (default 1)"
    )
    fit.add_argument(
        "--kappa",
        type=float,
        default=0.7,
        help="stochastic CAVI: forgetting rate kappa in (0.5, 1] (default 0.7)",
    )
    fit.add_argument(
        "--eval-every",
        type=float,
        metavar="PASSES",
        help="stochastic CAVI: also measure the exact ELBO every this many passes (each costs "
        "a pass; default: at the end only)",
    )
    fit.add_argument(
        "--steps", type=int, default=1000, help="SVI steps; 0 runs CAVI alone (default 1000)"
    )
    fit.add_argument(
        "--estimator",
        choices=["enum", "stl", "trace"],
        default="enum",
        help="SVI loss: enum = TraceEnum_ELBO with Z summed out exactly in the "
        "guide (default); stl = the path-derivative estimator on top of enum (Z still "
        "summed out; the score term of mu and lambda dropped); trace = Trace_ELBO with Z "
        "sampled (score function, much noisier)",
    )
    fit.add_argument("--lr", type=float, default=0.1, help="initial Adam learning rate (0.1)")
    fit.add_argument(
        "--lr-final",
        type=float,
        default=0.01,
        help="learning rate at the last step; decays geometrically (0.01)",
    )
    fit.add_argument(
        "--particles",
        type=int,
        default=1,
        help="Monte Carlo particles per SVI step, vectorised (default 1)",
    )
    add_jit_argument(
        fit,
        "Default: compile when (events per step) x K <= 200,000, where it was measured "
        "faster (2.3x at N = 1,000, K = 3; 1.2x at N = 10^4, K = 10); above, Pyro's traced "
        "enumeration masks every cost term and is slower (0.65x at N = 10^5, K = 10)",
    )
    fit.add_argument(
        "--subsample-size",
        type=int,
        help="events per SVI step, per process under torchrun (minibatch SVI; default: all)",
    )


def _check_args(args) -> None:
    """Validate every flag before any work; raise ValueError naming the flag."""
    jit_mode(args)  # --jit-backend with --no-jit
    check_ints(args, ("num_events", "max_iter", "num_init", "particles", "subsample_size",
                      "chunk_size", "batch_size"))  # fmt: skip
    check_ints(args, ("steps",), low=0)
    check_floats(args, ("lr", "lr_final", "strength_scale"))
    if args.chunk_size is not None:
        if args.data is None or not is_parquet(args.data):
            raise ValueError(
                "--chunk-size streams a Parquet catalog: give --data FILE.parquet (made by "
                "vilab catalog convert or vilab catalog simulate)"
            )
        if args.steps > 0 and args.estimator == "trace":
            raise ValueError(
                "with --chunk-size, SVI sums Z out in the model: use --estimator enum or stl, "
                "not trace"
            )
        if args.diagnostics:
            raise ValueError("--diagnostics needs the catalog in memory: drop --chunk-size")
        if args.method == "auto-cavi":
            raise ValueError("--method auto-cavi needs the catalog in memory: drop --chunk-size")
    if args.method == "auto-cavi" and args.cavi != "exact":
        raise ValueError("--method auto-cavi is compared with the exact CAVI: drop --cavi "
                         f"{args.cavi}")  # fmt: skip
    if args.steps == 0 and args.diagnostics:
        raise ValueError("--diagnostics checks the SVI fit: it needs --steps >= 1")
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise ValueError(f"--tol must be a finite number >= 0, got {args.tol}")
    check_floats(args, ("passes", "eval_every"))
    if not (math.isfinite(args.tau0) and args.tau0 >= 0):
        raise ValueError(f"--tau0 must be a finite number >= 0, got {args.tau0}")
    if not 0.5 < args.kappa <= 1:
        raise ValueError(f"--kappa must be in (0.5, 1], got {args.kappa}")
    diagnostics.check_arguments(args)
    check_output_paths(args)


def hyperparameters(args) -> Hyperparameters:
    """The model flags (:func:`add_model_arguments`) as checked :class:`Hyperparameters`."""
    check_ints(args, ("k",))
    check_floats(args, ("tau", "rho", "alpha", "beta"))
    if args.mixing is not None and len(args.mixing) != args.k:
        raise ValueError(f"--mixing needs --k={args.k} weights, got {len(args.mixing)}")
    return Hyperparameters(args.k, mixing=args.mixing, tau=args.tau, nu=args.nu, rho=args.rho,
                           alpha=args.alpha, beta=args.beta)  # fmt: skip


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
        catalog = read(
            args.data,
            lat_col=args.lat_col,
            lon_col=args.lon_col,
            mag_col=args.mag_col,
            strength_scale=args.strength_scale,
            bbox=args.bbox,
            drop_invalid=args.drop_invalid,
        )
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


def _parquet_catalog(path, **options):
    """A whole Parquet catalog in memory (the in-memory fit; ``--chunk-size`` streams it)."""
    return ParquetCatalog(path, **options).load()


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


# Compile the loss when (events per step) x K is at most this (see --jit's help).
JIT_MAX_CELLS = 200_000


def _use_jit(args, num_events: int) -> bool | str:
    """``get_elbo``'s ``jit``: ``--jit``/``--no-jit``/``--jit-backend`` if given, else whether
    the step's N x K is small enough."""
    return jit_mode(args, (args.subsample_size or num_events) * args.k <= JIT_MAX_CELLS)


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
    _check_args(args)
    device = resolve_device(args.device)
    if launched() and args.chunk_size is None:
        raise ValueError(
            "under torchrun, vilab earthquake streams a Parquet catalog over the processes: "
            "give --data FILE.parquet --chunk-size N"
        )
    if launched() and (args.jit or args.jit_backend):
        raise ValueError("--jit compiles one process's loss: drop it under torchrun")
    with process_group(device) as group:
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
