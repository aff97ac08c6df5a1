"""``vilab ring --density``: four density estimates of the ring mixture scored on test data.

For each ``--radius`` R: N = ``--num-samples`` training points, ``--num-validation`` and
``--num-test`` more, all from the ring mixture (K unit Gaussians, equal weights). Scored on the
test points (mean log-likelihood per point, with its standard error sd / sqrt(n)):

- the true density;
- EM's fitted mixture (best of ``--num-init`` k-means++ starts);
- the Gaussian kernel density estimate with the bandwidth of ``--bandwidth-grid`` that scores
  best on the validation points (and, for comparison, Scott's rule, equal to Silverman's in
  2-D);
- the energy-based model of :mod:`inference.density.ebm` trained by SNIS on the training points,
  with its log normaliser A(theta) by importance sampling (``--ebm-eval-draws`` draws, with its
  standard error) and by Simpson's rule on a box of +-10 standardised units
  (``--quadrature-points`` nodes a side); the test log-likelihood uses the importance estimate.

The proposal of the EBM is EM's mixture with each component's sd widened to 1.5 (the truth's
is 1: heavier tails than the target near the data), weight 0.9, plus a defensive Gaussian at
the data's mean with the EBM's base sd (2 x the data's spread), weight 0.1.

Also reported: each model's difference to the truth with its paired standard error (the
same test points), and the source's metric -- the mean of log softmax of the model's
log-densities over the test points, which is at most -log(n_test) for any model (Jensen), so
that it cannot be read as a log-likelihood: this is why the source's EBM "scored -7.95".

Writes density_bandwidth.png, density_maps.png, ebm_training.png and summary.json.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analytic import kde, ring
from inference.density import ebm
from vilab.io import atomic_write_json
from vilab.report import format_table

__all__ = ["check_args", "run"]

PROPOSAL_COMPONENT_SD = 1.5  # EM's components widened from the truth's 1
DEFENSIVE_WEIGHT = 0.1
BASE_SD = 2.0  # the EBM's Gaussian term, in units of the data's spread
QUADRATURE_HALF_WIDTH = 10.0  # the box, in units of the data's spread: base term <= -12.5


def check_args(args) -> None:
    """Refuse bad density flags before any work (called only with ``--density``)."""
    for name in ("num_validation", "num_test", "ebm_steps", "ebm_batch_size", "ebm_hidden",
                 "ebm_layers"):  # fmt: skip
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("ebm_draws", "ebm_eval_draws"):
        value = getattr(args, name)
        if value < 2:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 2, got {value}")
    if args.quadrature_points < 3 or args.quadrature_points % 2 == 0:
        raise ValueError(f"--quadrature-points must be odd and >= 3, got {args.quadrature_points}")
    lo, hi, num = args.bandwidth_grid
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"--bandwidth-grid needs 0 < LO <= HI, got LO={lo:g}, HI={hi:g}")
    if num != int(num) or num < 1:
        raise ValueError(f"--bandwidth-grid NUM must be a whole number >= 1, got {num:g}")
    if not (math.isfinite(args.ebm_lr) and args.ebm_lr > 0):
        raise ValueError(f"--ebm-lr must be a finite number > 0, got {args.ebm_lr}")


def _score(log_p: torch.Tensor) -> dict:
    """Mean log-likelihood per point and its standard error sd / sqrt(n)."""
    return {"mean": log_p.mean().item(), "se": (log_p.std() / math.sqrt(log_p.numel())).item()}


def _source_metric(log_p: torch.Tensor) -> float:
    """The source's score: mean_i log softmax_i(log p), at most -log n for any log p."""
    return torch.log_softmax(log_p, dim=0).mean().item()


def _study(radius: float, args, seed: int) -> dict:
    K = args.num_components
    truth = ring.ring_means(K, radius)
    X, _ = ring.sample(args.num_samples, truth, seed=seed)
    V, _ = ring.sample(args.num_validation, truth, seed=seed + 1)
    T, _ = ring.sample(args.num_test, truth, seed=seed + 2)

    fit = ring.em(X, K, num_init=args.num_init, seed=seed)
    lo, hi, num = args.bandwidth_grid
    selection = kde.select_bandwidth(X, V, torch.linspace(lo, hi, int(num), dtype=torch.float64))
    scott = kde.scott_bandwidth(X)

    center = X.mean(0)
    spread = X.var(0).mean().sqrt().item()
    proposal = ebm.defensive_mixture(fit.means, fit.weights, PROPOSAL_COMPONENT_SD, center,
                                     BASE_SD * spread, DEFENSIVE_WEIGHT)  # fmt: skip
    torch.manual_seed(seed)  # the network's initial weights
    energy = ebm.EnergyMLP(center, spread, hidden=args.ebm_hidden, layers=args.ebm_layers,
                           base_sd=BASE_SD)  # fmt: skip
    training = ebm.train_ebm(
        energy, X, proposal, steps=args.ebm_steps, batch_size=args.ebm_batch_size,
        num_draws=args.ebm_draws, lr=args.ebm_lr, schedule=args.ebm_schedule, seed=seed,
        progress=not args.quiet,
    )  # fmt: skip
    log_a = ebm.importance_log_normaliser(energy, proposal, args.ebm_eval_draws, seed=seed + 3)
    half = QUADRATURE_HALF_WIDTH * spread
    box = (center[0].item() - half, center[0].item() + half,
           center[1].item() - half, center[1].item() + half)  # fmt: skip
    log_a_quad = ebm.quadrature_log_normaliser(energy, box, args.quadrature_points)

    with torch.no_grad():
        log_p = {
            "truth": ring.log_density(T, truth),
            "em": ring.log_density(T, fit.means, fit.weights),
            "kde": kde.kde_log_density(X, T, selection.bandwidth),
            "kde_scott": kde.kde_log_density(X, T, scott),
            "ebm": energy(T) - log_a.value,
        }
    return {
        "radius": radius,
        "test_log_likelihood": {name: _score(lp) for name, lp in log_p.items()},
        "difference_to_truth": {
            name: _score(lp - log_p["truth"]) for name, lp in log_p.items() if name != "truth"
        },
        "source_metric": {name: _source_metric(lp) for name, lp in log_p.items()},
        "source_metric_bound": -math.log(args.num_test),
        "kde_bandwidth": selection.bandwidth,
        "kde_validation": {"grid": selection.grid.tolist(), "scores": selection.scores.tolist()},
        "scott_bandwidth": scott,
        "silverman_bandwidth": kde.silverman_bandwidth(X),
        "ebm_log_normaliser": {
            "importance": log_a.value,
            "importance_se": log_a.se,
            "importance_ess": log_a.ess,
            "importance_draws": args.ebm_eval_draws,
            "quadrature": log_a_quad,
            "quadrature_box": list(box),
            "quadrature_points": args.quadrature_points,
        },
        "ebm_training": {
            "objective": training.objective,
            "ess_fraction": training.ess_fraction,
            "lr": training.lr,
        },
        "_maps": {
            "X": X,
            "truth": truth,
            "fit": fit,
            "bandwidth": selection.bandwidth,
            "energy": energy,
            "log_a": log_a.value,
        },  # fmt: skip
    }


def _print_report(studies: list[dict], n_test: int) -> None:
    names = {"truth": "true density", "em": "EM mixture", "kde": "KDE (validated h)",
             "kde_scott": "KDE (Scott = Silverman h)", "ebm": "EBM (SNIS)"}  # fmt: skip
    for s in studies:
        ll, diff, src = s["test_log_likelihood"], s["difference_to_truth"], s["source_metric"]
        rows = [["model", "test log-lik / point", "minus truth (paired)", "source's metric"]]
        for key, label in names.items():
            d = diff.get(key)
            rows.append([
                label, f"{ll[key]['mean']:.4f} ± {ll[key]['se']:.4f}",
                "" if d is None else f"{d['mean']:+.4f} ± {d['se']:.4f}", f"{src[key]:.3f}",
            ])  # fmt: skip
        a = s["ebm_log_normaliser"]
        ess = s["ebm_training"]["ess_fraction"]
        print(f"R = {s['radius']:g}: {n_test} test points")
        print(format_table(rows))
        print(
            f"  KDE bandwidth {s['kde_bandwidth']:.4f} (validation); Scott "
            f"{s['scott_bandwidth']:.4f}, Silverman {s['silverman_bandwidth']:.4f}\n"
            f"  EBM log A: importance {a['importance']:.4f} ± {a['importance_se']:.4f} "
            f"(ESS {a['importance_ess']:.0f} of {a['importance_draws']}), quadrature "
            f"{a['quadrature']:.4f} ({a['quadrature_points']}^2 Simpson nodes)\n"
            f"  proposal ESS during training: {100 * ess[0]:.1f}% at the first step, "
            f"{100 * ess[-1]:.1f}% at the last; the source's metric is at most "
            f"{s['source_metric_bound']:.3f} (-log {n_test}) for any model"
        )


def run(args: argparse.Namespace) -> dict:
    """Fit, score, print, plot and write the density study; return the summary dict."""
    studies = [
        _study(r, args, args.seed + 100 * i)
        for i, r in enumerate(tqdm(args.radius, desc="density per radius", disable=args.quiet))
    ]
    _print_report(studies, args.num_test)

    from vilab.ring import density_plots  # matplotlib: lazily

    out = Path(args.out)
    written = [
        density_plots.plot_bandwidth(out / "density_bandwidth.png", studies),
        density_plots.plot_maps(out / "density_maps.png", studies),
        density_plots.plot_training(out / "ebm_training.png", studies),
    ]
    summary = {
        "num_components": args.num_components,
        "num_samples": args.num_samples,
        "num_validation": args.num_validation,
        "num_test": args.num_test,
        "seed": args.seed,
        "ebm": {
            "steps": args.ebm_steps,
            "lr": args.ebm_lr,
            "schedule": args.ebm_schedule,
            "batch_size": args.ebm_batch_size,
            "draws": args.ebm_draws,
            "hidden": args.ebm_hidden,
            "layers": args.ebm_layers,
            "base_sd": BASE_SD,
            "proposal": {"component_sd": PROPOSAL_COMPONENT_SD, "defensive": DEFENSIVE_WEIGHT},
        },  # fmt: skip
        "density": {
            f"{s['radius']:g}": {k: v for k, v in s.items() if k != "_maps"} for s in studies
        },
    }
    written.append(atomic_write_json(out / "summary.json", summary))
    if args.json:
        written.append(atomic_write_json(args.json, summary))
    print("wrote: " + ", ".join(str(p) for p in written))
    return summary
