"""Runs ``vilab gradvar``: its flags, and the description ``--help`` shows, are in
:mod:`vilab.gradvar.flags`."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inference.svi import gradient_moments, variance_along_run
from vilab.devices import resolve_device
from vilab.flags import (
    check_floats,
    check_ints,
    check_output_paths,
    jit_mode,
)
from vilab.gradvar.cases import ESTIMATORS_FOR, TRAIN_ESTIMATOR, build_case
from vilab.io import atomic_write_json
from vilab.report import format_table

__all__ = ["run"]


def _check_args(args) -> None:
    jit_mode(args)  # --jit-backend with --no-jit
    check_ints(args, ("draws",), low=2)
    check_ints(args, ("particles", "steps", "every", "batch_size", "latent_dim", "hidden_dim",
                      "train_steps"))  # fmt: skip
    check_floats(args, ("lr", "lr_final"))
    check_output_paths(args)
    known = ESTIMATORS_FOR[args.model]
    for flag, names in (("--estimator", args.estimator or []),
                        ("--train-estimator", [args.train_estimator or known[0]])):  # fmt: skip
        for name in names:
            if name not in known:
                raise ValueError(
                    f"{flag} {name!r} does not apply to --model {args.model}; choose from "
                    f"{list(known)}"
                )


def _vae_images(args, device) -> torch.Tensor:
    from inference.data import binarize, load_mnist

    data = load_mnist(args.data_dir, download=args.download)
    if args.batch_size > data.train_images.shape[0]:
        raise ValueError(f"--batch-size {args.batch_size} exceeds the training set")
    gen = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(data.train_images.shape[0], generator=gen)[: args.batch_size]
    return binarize(data.train_images[idx], "round").to(device)


def _moments_row(moments) -> dict:
    """One estimator at one point: total variance (all parameters; q's alone), SNR, cost, and
    per parameter the norm of the mean gradient, its total variance and its SNR."""
    return {
        "total_variance": moments.total_variance(),
        "guide_variance": moments.total_variance("guide."),
        "snr": moments.overall_snr(),
        "seconds_per_draw": moments.seconds,
        "parameters": {
            k: {
                "mean_norm": moments.mean[k].norm().item(),
                "total_variance": moments.variance[k].sum().item(),
                "snr": snr,
            }
            for k, snr in moments.parameter_snr().items()
        },
    }


def _at_fixed_points(case, names, args) -> dict:
    """Every estimator's gradient moments at the case's start and at its optimum:
    {point: {estimator: row}}."""
    table = {}
    for point in ("start", "optimum"):
        case.move_to(point)
        table[point] = {
            name: _moments_row(
                gradient_moments(
                    case.model,
                    case.guides[name],
                    case.elbo(name, args.particles, jit_mode(args)),
                    *case.args,
                    num_draws=args.draws,
                    seed=args.seed,
                    **case.kwargs,
                )  # fmt: skip
            )
            for name in names
        }
    return table


def _along_run(case, names, train: str, args):
    """Every estimator's total variance every ``--every`` steps of an SVI run from the start."""
    case.move_to("start")
    lr = args.lr or case.lr
    return variance_along_run(
        case.model,
        case.guide,
        case.elbo(train, args.particles, jit_mode(args)),
        {name: case.elbo(name, args.particles, jit_mode(args)) for name in names},
        *case.args,
        num_steps=args.steps or case.steps,
        every=args.every,
        num_draws=max(2, args.draws // 2),
        lr=lr,
        lr_final=args.lr_final or (case.lr_final if args.lr is None else lr),
        seed=args.seed,
        progress=not args.quiet,
        guides=case.guides,
        **case.kwargs,
    )


def _print_report(summary: dict) -> None:
    """Variance, its ratio to trace, SNR and cost per point and estimator; the run's last."""
    rows = [["point", "estimator", "variance (all)", "vs trace", "variance (q)", "vs trace",
             "SNR", "ms / draw"]]  # fmt: skip
    for point, by_name in summary["fixed_points"].items():
        reference = by_name.get("trace")

        def ratio(t, key, reference=reference):
            return f"{t[key] / reference[key]:.3g}" if reference and reference[key] else "-"

        for name, t in by_name.items():
            rows.append(
                [point, name, f"{t['total_variance']:.4g}", ratio(t, "total_variance"),
                 f"{t['guide_variance']:.4g}", ratio(t, "guide_variance"), f"{t['snr']:.3g}",
                 f"{1e3 * t['seconds_per_draw']:.2f}"]
            )  # fmt: skip
    print(
        f"Gradient variance, --model {summary['model']}: {summary['draws']} draws x "
        f"{summary['particles']} particle(s) at each point"
    )
    print(format_table(rows))
    along = summary["along_run"]
    last = {name: values[-1] for name, values in along["total_variance"].items()}
    print(
        f"after {along['num_steps']} SVI steps ({along['train_estimator']}): "
        + ", ".join(f"{name} {value:.3g}" for name, value in last.items())
    )


def run(args: argparse.Namespace) -> dict:
    """Measure, print the table, write the files; return the summary dict."""
    _check_args(args)
    device = resolve_device(args.device)
    options = {}
    if args.model == "vae":
        options = {
            "images": _vae_images(args, device),
            "latent_dim": args.latent_dim,
            "hidden_dim": args.hidden_dim,
            "train_steps": args.train_steps,
            "progress": not args.quiet,
        }
    case = build_case(args.model, seed=args.seed, **options)
    names = args.estimator or list(case.estimators)
    train = args.train_estimator or TRAIN_ESTIMATOR[args.model]

    fixed_points = _at_fixed_points(case, names, args)
    trace_run = _along_run(case, names, train, args)
    summary = {
        "model": args.model,
        "draws": args.draws,
        "particles": args.particles,
        "jit": bool(jit_mode(args)),  # default: --no-jit
        "jit_backend": jit_mode(args) or None,
        "fixed_points": fixed_points,
        "along_run": {
            "train_estimator": train,
            "num_steps": trace_run.fit.num_steps,
            "steps": trace_run.steps,
            "total_variance": trace_run.total_variance,
            "elbo_history": trace_run.fit.elbo_history.tolist(),
        },
    }
    _print_report(summary)

    from vilab.gradvar.plots import plot_variance_along_run  # matplotlib: lazily

    out_dir = Path(args.out)
    written = [
        plot_variance_along_run(out_dir / "gradvar.png", args.model, trace_run, train),
        atomic_write_json(out_dir / "summary.json", summary),
    ]
    if args.json:
        written.append(atomic_write_json(args.json, summary))
    print("wrote: " + ", ".join(str(p) for p in written))
    return summary
