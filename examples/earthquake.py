"""Earthquake mixture: closed-form CAVI and Pyro SVI on a simulated catalog.

Model: K super-epicentres; each event n has a cluster Z_n ~ Cat(pi), a 2-D location
X_n ~ N(mu_k, tau^-1 I) and an integer strength S_n ~ Poisson(lambda_k), with priors
mu_k ~ N(nu, rho^-1 I) and lambda_k ~ Gamma(alpha, beta). The mean-field posterior is found
twice: by coordinate ascent with the closed-form updates (``analytic.earthquake.cavi``) and by
Pyro SVI with Z summed out exactly (``TraceEnum_ELBO``). Both are scored by the same
closed-form ELBO, and both are compared with the parameters the data were drawn from.

For real catalogs, plots and the JSON summary use the command line: ``vilab earthquake``.

References:
    Blei, Kucukelbir & McAuliffe (2017), Variational inference: a review for statisticians.
    Bishop (2006), Pattern Recognition and Machine Learning, §10.2.
"""

from __future__ import annotations

import argparse

import torch

from analytic.earthquake import Hyperparameters, cavi, elbo, initial_mean_field
from guides.earthquake import EarthquakeGuide
from inference.estimators import get_elbo
from inference.svi import fit_svi
from ppl_models.earthquake import MAX_PLATE_NESTING, model, simulate


def main(args) -> dict:
    hp = Hyperparameters(args.k, tau=1.0, rho=0.01, alpha=5.0, beta=0.5)
    X, S, _, mu, lam = simulate(hp, args.num_events, seed=args.seed)

    exact = cavi(X, S, hp, seed=args.seed)

    init = initial_mean_field(X, S, hp, torch.Generator().manual_seed(args.seed))
    guide = EarthquakeGuide.for_svi(init, hp)
    fit_svi(
        model,
        guide,
        get_elbo("enum", max_plate_nesting=MAX_PLATE_NESTING),
        X,
        S,
        hp,
        num_steps=args.steps,
        lr=0.1,
        lr_final=0.01,
        seed=args.seed,
        progress=False,
    )
    q_svi = guide.mean_field()

    def mean_error(q):  # distance from each true centre to the nearest fitted one
        return torch.cdist(mu, q.loc).min(-1).values.max().item()

    metrics = {
        "cavi_elbo": exact.elbo.item(),
        "svi_elbo": elbo(X, S, hp, q_svi).item(),
        "cavi_iterations": exact.num_iter,
        "cavi_max_mean_error": mean_error(exact.q),
        "svi_max_mean_error": mean_error(q_svi),
    }
    print(f"true rates: {[round(v, 2) for v in lam.tolist()]}")
    for name, value in metrics.items():
        print(f"{name:>20}: {value:.4f}" if isinstance(value, float) else f"{name:>20}: {value}")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-events", type=int, default=2000, help="events to simulate (2000)")
    parser.add_argument("--k", type=int, default=3, help="clusters K (default 3)")
    parser.add_argument("--steps", type=int, default=500, help="SVI steps (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, init and SVI (0)")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
