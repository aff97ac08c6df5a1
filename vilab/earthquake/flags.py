"""The flags of ``vilab earthquake`` (the model's flags are also ``vilab catalog``'s), and their
checks: every flag is validated before any work, and a bad value raises one ``ValueError``
naming the flag."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from vilab import diagnostics
from vilab.flags import (
    add_catalog_arguments,
    add_jit_argument,
    add_output_arguments,
    argparse_type,
    check_floats,
    check_ints,
    check_output_paths,
    check_range,
    jit_mode,
    physical_memory,
    weights,
)

# the ranges where a flag's run means something in float64 (see check_arguments)
MAX_LR = 10.0  # Adam moves each parameter by about lr a step; the guide's are log-scales
MAX_PASSES = 1e6
MAX_MEAN_RATE = 1e9  # alpha / beta: strengths are Poisson counts, exact in float64 below 2**53

if TYPE_CHECKING:
    from analytic.earthquake import Hyperparameters

__all__ = ["add_arguments", "add_model_arguments", "check_arguments", "hyperparameters"]

#: How long a rank waits for the others by default (inference.distributed.DEFAULT_TIMEOUT,
#: repeated here so that building the parser imports no torch; a test holds them equal).
DEFAULT_TIMEOUT = 60.0


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
    """The flags of ``vilab earthquake``."""
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
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others in a collective; a rank "
        "that dies, is killed or freezes then stops every rank within about this time, each "
        f"with one line naming itself and the cause (default {DEFAULT_TIMEOUT:g})",
    )
    data.add_argument(
        "--num-events",
        type=int,
        default=1000,
        help="events to simulate when no --data is given (default 1000)",
    )
    add_catalog_arguments(
        data,
        scale_help="strength S = round(scale * magnitude), the Poisson count "
        "(default 1: M 5.5-9.1 -> 6-9; 10 resolves tenths)",
        bbox_help="keep only events inside this box (degrees)",
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
        help="stochastic CAVI: events per minibatch, per process (default 1000, or all the "
        "simulated events if fewer)",
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
        "Default: while (events per step) x K <= 200,000, torchscript (2.3x faster steps "
        "at N = 1,000, K = 3), or the whole step (--jit-backend step) from 5,000 steps on; "
        "above, where Pyro's traced enumeration masks every cost term and torchscript is "
        "slower, the whole step from 500 steps on (4.5x faster at N = 10^5, K = 10), else "
        "uncompiled",
    )
    fit.add_argument(
        "--subsample-size",
        type=int,
        help="events per SVI step, per process under torchrun (minibatch SVI; default: all)",
    )


def check_arguments(args) -> None:
    """Validate every flag before any work; raise ValueError naming the flag."""
    jit_mode(args)  # --jit-backend with --no-jit
    check_ints(args, ("num_events", "max_iter", "num_init", "particles", "subsample_size",
                      "chunk_size", "batch_size"))  # fmt: skip
    check_ints(args, ("steps",), low=0)
    check_floats(args, ("lr", "lr_final", "strength_scale"))
    check_range(args, "timeout", 1.0, 86400.0, "a collective waits this long for a rank")
    for name in ("lr", "lr_final"):
        check_range(args, name, 0.0, MAX_LR, "Adam moves each parameter by about lr a step, "
                    "and the guide's are log-precisions and log-rates")  # fmt: skip
    if args.data is None:
        _check_memory(args.num_events, args.k)
        if args.batch_size is not None and args.batch_size > args.num_events:
            raise ValueError(f"--batch-size must be at most --num-events ({args.num_events}), "
                             f"got {args.batch_size}")  # fmt: skip
    if args.batch_size is None:
        args.batch_size = min(1000, args.num_events) if args.data is None else 1000
    if args.chunk_size is not None:
        from inference.data import is_parquet  # (torch: not imported to build the parser)

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
    check_range(args, "passes", 0.0, MAX_PASSES, "passes over the data")
    if not (math.isfinite(args.tau0) and args.tau0 >= 0):
        raise ValueError(f"--tau0 must be a finite number >= 0, got {args.tau0}")
    if not 0.5 < args.kappa <= 1:
        raise ValueError(f"--kappa must be in (0.5, 1], got {args.kappa}")
    diagnostics.check_arguments(args)
    check_output_paths(args, {"--data": args.data})


def _check_memory(num_events: int, k: int) -> None:
    """A simulated catalog is held in memory: about 8 (4 + 3 K) bytes an event (coordinates,
    strength, label, responsibilities and their work space); refuse what exceeds half of this
    machine's memory, naming the flag and the streamed route."""
    need, have = 8 * (4 + 3 * k) * num_events, physical_memory()
    if have and need > have / 2:
        raise ValueError(
            f"--num-events {num_events} needs about {need / 2**30:.3g} GiB in memory (this "
            f"machine has {have / 2**30:.3g} GiB): write the catalog with vilab catalog "
            "simulate OUT.parquet and stream it with --data OUT.parquet --chunk-size"
        )


def hyperparameters(args) -> Hyperparameters:
    """The model flags (:func:`add_model_arguments`) as checked :class:`Hyperparameters`."""
    from analytic.earthquake import Hyperparameters  # (torch: see is_parquet above)

    check_ints(args, ("k",))
    check_floats(args, ("tau", "rho", "alpha", "beta"))
    for name, what in (("tau", "an event's"), ("rho", "a centre's")):
        check_range(args, name, 1e-12, 1e12, f"{what} spread, precision^-1/2, between 1e-6 and "
                    "1e6 degrees")  # fmt: skip
    check_range(args, "nu", -1e6, 1e6, "the centres' prior mean within 1e6 degrees of 0")
    for name in ("alpha", "beta"):
        check_range(args, name, 1e-6, 1e6, "a Gamma prior on the rates")
    if args.alpha / args.beta > MAX_MEAN_RATE:
        raise ValueError(
            f"--alpha / --beta, the prior mean of the strength rates, must be at most "
            f"{MAX_MEAN_RATE:g} (strengths are Poisson counts, exact in float64 below 2**53), "
            f"got {args.alpha:g} / {args.beta:g} = {args.alpha / args.beta:g}"
        )
    if args.mixing is not None and len(args.mixing) != args.k:
        raise ValueError(f"--mixing needs --k={args.k} weights, got {len(args.mixing)}")
    return Hyperparameters(args.k, mixing=args.mixing, tau=args.tau, nu=args.nu, rho=args.rho,
                           alpha=args.alpha, beta=args.beta)  # fmt: skip
