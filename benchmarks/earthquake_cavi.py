"""Seconds per CAVI iteration, ELBO included: ours against scikit-learn's
``BayesianGaussianMixture`` (spherical covariances, the nearest standard variational mixture).

Both are timed the same way, in the same run: a fit of ``1 + m`` iterations minus a fit of 1
iteration, divided by the extra iterations run, so initialisation (k-means++ for us, random
responsibilities for scikit-learn) is excluded and each iteration includes its ELBO / lower
bound. Data: N events from the earthquake model with K = 10 clusters, float64 throughout.
The work is memory-bound (a few passes over the N x K responsibilities per iteration).

Run:  python benchmarks/earthquake_cavi.py [--sizes 10000 100000 1000000] [--iters 10]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from analytic.earthquake import Hyperparameters, cavi
from ppl_models.earthquake import simulate


def _ours(X, S, hp, iters):
    def run(max_iter):
        start = time.perf_counter()
        result = cavi(X, S, hp, max_iter=max_iter, tol=0.0, num_init=1, seed=0)
        return time.perf_counter() - start, result.num_iter

    return _per_iteration(run, iters)


def _sklearn(X, num_clusters, iters):
    def run(max_iter):
        model = BayesianGaussianMixture(
            n_components=num_clusters,
            covariance_type="spherical",
            max_iter=max_iter,
            tol=0.0,
            init_params="random",
            random_state=0,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        return time.perf_counter() - start, model.n_iter_

    return _per_iteration(run, iters)


def _per_iteration(run, iters, repeats=3):
    """(best time of 1 + iters iterations - best time of 1) / extra iterations; the best of
    ``repeats`` runs each, so that page faults and other noise do not count."""
    run(1)  # warm-up
    t1, n1 = min(run(1) for _ in range(repeats))
    t2, n2 = min(run(1 + iters) for _ in range(repeats))
    return (t2 - t1) / max(n2 - n1, 1)


def main(args) -> dict:
    hp = Hyperparameters(args.k)
    rows = []
    print(
        f"CAVI seconds per iteration (ELBO included), K={args.k}, float64, "
        f"torch threads={torch.get_num_threads()}"
    )
    print(f"{'N':>9}  {'ours (ms)':>10}  {'sklearn BGM (ms)':>16}  {'ratio ours/sklearn':>18}")
    for n in args.sizes:
        X, S, *_ = simulate(hp, n, seed=0)
        ours = _ours(X, S, hp, args.iters)
        theirs = _sklearn(X.numpy(), args.k, args.iters)
        rows.append({"n": n, "ours_s": ours, "sklearn_s": theirs, "ratio": ours / theirs})
        print(f"{n:>9}  {1e3 * ours:>10.2f}  {1e3 * theirs:>16.2f}  {ours / theirs:>18.3f}")
    return {"rows": rows}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="numbers of events N (default 1e4 1e5 1e6)",
    )
    parser.add_argument("--k", type=int, default=10, help="clusters K (default 10)")
    parser.add_argument(
        "--iters", type=int, default=10, help="extra iterations timed per size (default 10)"
    )
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
