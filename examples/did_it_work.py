"""Did it work? The three case studies through the same diagnostics, in one table.

"Yes, but did it work?" (Yao, Vehtari, Simpson & Gelman 2018): after every variational fit,
two questions -- did the optimiser converge, and is q close to the true posterior? For each
case study this script fits q, then

- runs Pareto-smoothed importance sampling of p(x, z) / q(z): k-hat < 0.5 good, < 0.7 usable,
  above that q is not to be trusted;
- where the posterior is low-dimensional enough (earthquake, exponential-Gaussian), runs NUTS as
  the reference and reports the ratio of VI to NUTS posterior sds (mean-field VI is known to
  under-estimate them) and the overlap of the central 90% intervals;
- for the VAE, k-hat per test image (there is no NUTS over 200-dimensional codes of many images).

The command-line equivalent is ``--diagnostics`` on ``vilab earthquake``, ``vilab expgauss``
and ``vilab vae``, which also writes posterior.nc, summary.csv and a forest plot.

References:
    Yao, Vehtari, Simpson & Gelman (2018), Yes, but Did It Work?: Evaluating Variational
    Inference, ICML.
    Vehtari, Simpson, Gelman, Yao & Gabry (2015-2024), Pareto Smoothed Importance Sampling.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from analytic.earthquake import Hyperparameters, cavi
from guides.earthquake import EarthquakeGuide
from inference import diagnostics as D
from inference.data import load_mnist
from ppl_models import earthquake
from vilab.earthquake.diagnostics import checks as earthquake_checks
from vilab.expgauss.diagnostics import checks as expgauss_checks
from vilab.report import format_table
from vilab.vae.evaluate import log_weights
from vilab.vae.train import VAEConfig, train_vae


def _nuts_row(name, psis, comparison):
    ratios = [r["sd_ratio"] for r in comparison.rows]
    return {
        "case": name,
        "khat": psis.khat,
        "verdict": psis.verdict.split(":")[0],
        "sd_ratio": f"{min(ratios):.2f}-{max(ratios):.2f}",
        "overlap90_min": min(r["overlap90"] for r in comparison.rows),
        "r_hat_max": max(r["r_hat"] for r in comparison.rows),
    }


def main(args) -> dict:
    rows = []

    sizes = {"num_draws": 2000, "nuts_samples": args.nuts_samples,
             "nuts_warmup": args.nuts_samples, "nuts_chains": 2, "seed": args.seed}  # fmt: skip

    # ---- earthquake: CAVI's mean field, Z summed out --------------------------------------
    hp = Hyperparameters(3, tau=1.0, rho=0.01, alpha=5.0, beta=0.5)
    X, S, *_ = earthquake.simulate(hp, args.num_events, seed=args.seed, dtype=torch.float64)
    guide = EarthquakeGuide(cavi(X, S, hp, seed=args.seed).q)
    _, psis, comparison = earthquake_checks(guide, X, S, hp, **sizes)
    rows.append(_nuts_row(f"earthquake, CAVI (N={args.num_events}, K=3)", psis, comparison))

    # ---- exponential-Gaussian: q = Expo(2/x) at theta = 2/x ------------------------------
    x = torch.tensor([1.0], dtype=torch.float64)
    _, psis, comparison = expgauss_checks(x, 2.0, 2.0, **sizes)
    rows.append(_nuts_row("exponential-Gaussian, q at (2/x, 2/x)", psis, comparison))

    # ---- VAE: k-hat per test image --------------------------------------------------------
    data = load_mnist(args.data_dir, download=args.data_dir is None)
    config = VAEConfig(latent_dim=args.latent_dim, hidden_dim=args.hidden_dim, seed=args.seed)
    result = train_vae(
        data.train_images[: args.vae_train_size],
        data.test_images[:100],
        config,
        epochs=args.vae_epochs,
        progress=False,
    )
    gen = torch.Generator().manual_seed(args.seed)
    lw = log_weights(result.model, result.guide, result.test_images[:50], 1000, gen)
    _, khat, _ = D.psis_from_log_weights(lw.T)
    rows.append(
        {
            "case": f"VAE, {args.vae_epochs} epoch(s), 50 test images",
            "khat": float(np.median(khat)),
            "verdict": D.verdict(float(np.median(khat))).split(":")[0] + " (median)",
            "sd_ratio": "-",
            "overlap90_min": float("nan"),
            "r_hat_max": float("nan"),
        }
    )

    header = ["case", "PSIS k-hat", "verdict", "sd VI/NUTS", "90% overlap (min)", "r-hat (max)"]
    table = [header] + [
        [
            r["case"],
            f"{r['khat']:.2f}",
            r["verdict"],
            r["sd_ratio"],
            f"{r['overlap90_min']:.2f}",
            f"{r['r_hat_max']:.3f}",
        ]
        for r in rows
    ]
    print(format_table(table))
    return {r["case"]: r["khat"] for r in rows}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files (else download)")
    parser.add_argument("--num-events", type=int, default=200, help="earthquake events (200)")
    parser.add_argument(
        "--nuts-samples", type=int, default=300, help="NUTS warm-up and draws per chain (300)"
    )
    parser.add_argument("--vae-epochs", type=int, default=2, help="VAE training epochs (2)")
    parser.add_argument("--vae-train-size", type=int, default=10_000, help="VAE images (10000)")
    parser.add_argument("--latent-dim", type=int, default=200, help="VAE latent dim (200)")
    parser.add_argument("--hidden-dim", type=int, default=400, help="VAE hidden width (400)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
