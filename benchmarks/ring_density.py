"""Density estimation on the ring: kernel-density scoring time against scikit-learn, and the
time the energy-based model needs to come within 0.2 nats of the true density.

1. KDE: log p_h at M query points from N training points (default 10^4 x 10^4, h = 0.616, the
   ring at R = 10), ours (chunked torch, exact) against ``sklearn.neighbors.KernelDensity``
   (kd-tree, its default tolerances rtol = atol = 0), each the best of ``--repeats``, run
   interleaved; the ratio sklearn / ours is printed, and the largest difference in log p.
2. EBM: the default run of ``vilab ring --density`` at R = 10 (N = 2,000, 3,000 steps) timed,
   then runs of 250, 500, ... steps up to it (each from the same start, its cosine schedule
   ending at its last step) until the test log-likelihood (1,000 test points, log A by importance
   sampling with 2^15 draws) is within 0.2 nats of the truth's: the seconds of that run.

Run:  python benchmarks/ring_density.py [--n 10000] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.neighbors import KernelDensity

from analytic import kde, ring
from inference.density import ebm


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_kde(n: int, repeats: int) -> dict:
    means = ring.ring_means(10, 10.0)
    X, _ = ring.sample(n, means, seed=0)
    Q, _ = ring.sample(n, means, seed=1)
    h = 0.616
    fitted = KernelDensity(bandwidth=h).fit(X.numpy())
    ours_t, sk_t = float("inf"), float("inf")
    for _ in range(repeats):  # interleaved
        t, ours = _best(lambda: kde.kde_log_density(X, Q, h), 1)
        ours_t = min(ours_t, t)
        t, theirs = _best(lambda: fitted.score_samples(Q.numpy()), 1)
        sk_t = min(sk_t, t)
    diff = np.abs(ours.numpy() - theirs).max()
    print(
        f"KDE {n} x {n}: ours {ours_t:.2f} s, scikit-learn {sk_t:.2f} s, ratio sklearn/ours "
        f"{sk_t / ours_t:.1f}; largest |difference| in log p {diff:.1e}"
    )
    return {"n": n, "ours_s": ours_t, "sklearn_s": sk_t, "ratio": sk_t / ours_t, "diff": diff}


def bench_ebm(check_every: int, steps: int = 3000) -> dict:
    means = ring.ring_means(10, 10.0)
    X, _ = ring.sample(2000, means, seed=0)
    T, _ = ring.sample(1000, means, seed=2)
    truth = ring.log_density(T, means).mean().item()
    fit = ring.em(X, 10, num_init=10, seed=0)
    center, spread = X.mean(0), X.var(0).mean().sqrt().item()
    q = ebm.defensive_mixture(fit.means, fit.weights, 1.5, center, 2.0 * spread, 0.1)
    torch.manual_seed(0)
    energy = ebm.EnergyMLP(center, spread, hidden=64, layers=2, base_sd=2.0)
    reached = None
    start = time.perf_counter()
    history = ebm.train_ebm(energy, X, q, steps=steps, lr=1e-2, seed=0)  # the default run
    elapsed = time.perf_counter() - start
    for stop in range(check_every, steps + 1, check_every):
        torch.manual_seed(0)
        e = ebm.EnergyMLP(center, spread, hidden=64, layers=2, base_sd=2.0)
        t0 = time.perf_counter()
        ebm.train_ebm(e, X, q, steps=stop, lr=1e-2, seed=0)
        t = time.perf_counter() - t0
        log_a = ebm.importance_log_normaliser(e, q, 1 << 15, seed=1)
        with torch.no_grad():
            score = (e(T) - log_a.value).mean().item()
        print(f"  {stop:5d} steps ({t:5.1f} s): test log-lik {score:.4f} (truth {truth:.4f})")
        if score > truth - 0.2:
            reached = (stop, t)
            break
    print(f"EBM: a run of {steps} steps takes {elapsed:.1f} s; final objective "
          f"{np.mean(history.objective[-100:]):.3f}")  # fmt: skip
    if reached:
        print(f"EBM within 0.2 nats of the truth after {reached[0]} steps, {reached[1]:.1f} s")
    else:
        print("EBM did not come within 0.2 nats of the truth")
    return {"default_run_s": elapsed, "reached": reached}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="training and query points")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    parser.add_argument("--check-every", type=int, default=250, help="EBM steps per check")
    parser.add_argument("--ebm-steps", type=int, default=3000, help="the default run's steps")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    return parser


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    return {"kde": bench_kde(args.n, args.repeats),
            "ebm": bench_ebm(args.check_every, args.ebm_steps)}  # fmt: skip


if __name__ == "__main__":
    main(build_parser().parse_args())
