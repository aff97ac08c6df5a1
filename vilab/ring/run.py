"""Runs ``vilab ring``: its flags, and the description ``--help`` shows, are in
:mod:`vilab.ring.flags`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analytic import kl1d, ring
from vilab.flags import check_ints, check_output_paths
from vilab.io import atomic_write_json
from vilab.matching import match_clusters
from vilab.report import format_table
from vilab.ring import density

__all__ = ["run"]

KL_RANGE = {"lower": -80.0, "upper": 80.0}  # D1 and D2 have no mass beyond 20 sds of this


MAX_RADIUS = 1e6


def _check_args(args) -> None:
    check_ints(args, ("num_components", "num_samples", "num_init"))
    for flag, radii in (("--radius", args.radius), ("--error-radii", args.error_radii)):
        for r in radii:
            if not (math.isfinite(r) and 0 <= r <= MAX_RADIUS):
                raise ValueError(
                    f"{flag} values must be in [0, {MAX_RADIUS:g}] (unit Gaussians on the circle: "
                    "beyond, squared distances of about R^2 keep fewer than 4 digits of the unit "
                    f"spread in float64), got {r:g}"
                )
    if args.num_samples < args.num_components:
        raise ValueError(
            f"--num-samples {args.num_samples} is fewer than --num-components {args.num_components}"
        )
    if args.density:
        if args.method != "em":
            raise ValueError(
                f"--method {args.method} fits at each --radius; --density runs the density "
                "study instead: give one or the other"
            )
        density.check_args(args)
    check_output_paths(args)


def _fit_at(radius: float, args, seed: int) -> dict:
    """Sample at ``radius``, fit by EM, match to the truth: the JSON record of one radius."""
    truth = ring.ring_means(args.num_components, radius)
    X, _ = ring.sample(args.num_samples, truth, seed=seed)
    fit = ring.em(X, args.num_components, num_init=args.num_init, seed=seed)
    perm = match_clusters(truth, fit.means)
    means, weights = fit.means[perm], fit.weights[perm]
    errors = (means - truth).norm(dim=-1)
    return {
        "radius": radius,
        "true_means": truth.tolist(),
        "means": means.tolist(),
        "weights": weights.tolist(),
        "mean_errors": errors.tolist(),
        "max_mean_error": errors.max().item(),
        "max_weight_error": (weights - 1 / args.num_components).abs().max().item(),
        "log_likelihood": fit.log_likelihood.item(),
        "true_log_likelihood": ring.log_density(X, truth).sum().item(),
        "em_iterations": len(fit.history) - 1,
        "converged": fit.converged,
        "_X": X,  # for the plots; dropped from the JSON
        **({"bayes": _bayes(X, truth, args, seed)} if args.method == "auto-cavi" else {}),
    }


def _bayes(X, truth, args, seed: int) -> dict:
    """The Bayesian fit by hand CAVI and auto-CAVI (:func:`vilab.ring.auto.compare`), matched
    to the truth: the JSON record."""
    from vilab.ring.auto import compare

    fit = compare(X, args.num_components, seed, num_init=args.num_init)
    perm = match_clusters(truth, fit["means"])
    means, weights = fit["means"][perm], fit["weights"][perm]
    return {
        **{k: v for k, v in fit.items() if k not in ("means", "weights")},
        "means": means.tolist(),
        "weights": weights.tolist(),
        "max_mean_error": (means - truth).norm(dim=-1).max().item(),
    }


def _elbo_curves(radius: float, K: int) -> dict:
    """L1, L2 = log p and the K -> infinity limit along x = (t, 0), t in [-2R, 2R] (R >= 1:
    [-2, 2] for smaller R)."""
    half = 2 * max(radius, 1.0)
    t = torch.linspace(-half, half, 801, dtype=torch.float64)
    X = torch.stack([t, torch.zeros_like(t)], dim=-1)
    means = ring.ring_means(K, radius)
    curves = {
        "t": t,
        "L1": ring.elbo_uniform(X, means),
        "L2": ring.log_density(X, means),
        "L1_limit": ring.elbo_uniform_limit(X, radius),
        "L2_limit": ring.log_density_limit(X, radius),
    }
    big = ring.log_density(X, ring.ring_means(5000, radius))
    curves["max_limit_error_K5000"] = (big - curves["L2_limit"]).abs().max().item()
    curves["max_L1_vs_limit"] = (curves["L1"] - curves["L1_limit"]).abs().max().item()
    return curves


def _kl_example() -> dict:
    out = {"reading": "variance (the source writes sigma^2 = 5, 3, 0.8)"}
    for reading in kl1d.READINGS:
        p, q = kl1d.seed_example(reading)
        key = "" if reading == "variance" else "_sd_reading"
        out[f"kl_pq{key}"] = kl1d.kl_quadrature(p, q, **KL_RANGE)
        out[f"kl_qp{key}"] = kl1d.kl_quadrature(q, p, **KL_RANGE)
    p, _ = kl1d.seed_example("variance")
    out["moment_matched"] = kl1d.moment_matched_gaussian(p, **KL_RANGE)._asdict()
    out["mode_seeking"] = kl1d.mode_seeking_gaussian(p)._asdict()
    out["source_printed"] = {"kl_pq": 97.77, "kl_qp": 2.10}
    return out


def _print_report(fits: list[dict], curves: dict, kl: dict, K: int) -> None:
    for f in fits:
        rows = [["k", "true mean", "EM mean", "|error|", "EM weight"]]
        for k in range(K):
            rows.append([
                str(k), "({:.2f}, {:.2f})".format(*f["true_means"][k]),
                "({:.2f}, {:.2f})".format(*f["means"][k]), f"{f['mean_errors'][k]:.3f}",
                f"{f['weights'][k]:.3f}",
            ])  # fmt: skip
        print(
            f"R = {f['radius']:g}: EM log-likelihood {f['log_likelihood']:.2f} vs truth's "
            f"{f['true_log_likelihood']:.2f} ({f['em_iterations']} iterations; true weights "
            f"{1 / K:.3f})"
        )
        print(format_table(rows))
        b = f.get("bayes")
        if b is not None:
            print(
                f"  Bayesian fit (Dirichlet weights, Normal means): largest mean error "
                f"{b['max_mean_error']:.3f}; auto-CAVI vs hand CAVI from one start: ELBO "
                f"{b['elbo']:.6f} vs {b['hand_elbo']:.6f} (relative difference "
                f"{b['elbo_relative_difference']:.1e}), parameters within "
                f"{b['max_relative_parameter_difference']:.1e}, {b['sweeps']} sweeps, "
                f"{1e3 * b['seconds_per_sweep']:.2f} vs {1e3 * b['hand_seconds_per_sweep']:.2f} "
                "ms per sweep"
            )
    print(
        f"K -> infinity: L1 equals its limit to {curves['max_L1_vs_limit']:.1e}; log p at "
        f"K = 5000 equals the ring density to {curves['max_limit_error_K5000']:.1e}"
    )
    mm, ms = kl["moment_matched"], kl["mode_seeking"]
    print(
        format_table([
            ["KL example (variances)", "KL(p||q)", "KL(q||p)"],
            ["D1 vs D2 = N(-10, 0.8)", f"{kl['kl_pq']:.3f}", f"{kl['kl_qp']:.3f}"],
            ["  reading them as sds", f"{kl['kl_pq_sd_reading']:.3f}",
             f"{kl['kl_qp_sd_reading']:.3f}"],
            ["  the source printed", "97.77", "2.10"],
            [f"moment-matched N({mm['mean']:.2f}, {mm['sd']:.2f}^2)", f"{mm['kl']:.4f}", ""],
            [f"mode-seeking N({ms['mean']:.2f}, {ms['sd']:.2f}^2)", "", f"{ms['kl']:.4f}"],
        ])
    )  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    """Fit, print, plot and write; return the summary dict."""
    _check_args(args)
    if args.density:
        return density.run(args)
    K = args.num_components
    jobs = [(r, args.seed + i) for i, r in enumerate(args.radius)]
    jobs += [(r, args.seed + 1000 + i) for i, r in enumerate(args.error_radii)]
    results = [_fit_at(r, args, seed)
               for r, seed in tqdm(jobs, desc="EM per radius", disable=args.quiet)]  # fmt: skip
    fits = results[: len(args.radius)]
    errors = [f["max_mean_error"] for f in results[len(args.radius) :]]
    curves = _elbo_curves(args.radius[0], K)
    kl = _kl_example()
    _print_report(fits, curves, kl, K)

    from vilab.ring import plots  # matplotlib: lazily

    out = Path(args.out)
    written = [
        plots.plot_data(out / "ring_data.png", fits),
        plots.plot_em_error(out / "em_error.png", args.error_radii, errors, K),
        plots.plot_elbos(out / "elbos.png", curves, args.radius[0], K),
        plots.plot_kl(out / "kl.png", kl),
    ]
    summary = {
        "num_components": K,
        "num_samples": args.num_samples,
        "seed": args.seed,
        "em": {f"{f['radius']:g}": {k: v for k, v in f.items() if k != "_X"} for f in fits},
        "em_error_vs_radius": {"radii": list(args.error_radii), "max_mean_error": errors},
        "limits": {
            "radius": args.radius[0],
            "max_L1_vs_limit": curves["max_L1_vs_limit"],
            "max_log_p_K5000_vs_limit": curves["max_limit_error_K5000"],
        },
        "kl": kl,
    }
    written.append(atomic_write_json(out / "summary.json", summary))
    if args.json:
        written.append(atomic_write_json(args.json, summary))
    print("wrote: " + ", ".join(str(p) for p in written))
    return summary
