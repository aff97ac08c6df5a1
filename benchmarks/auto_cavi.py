"""Seconds per CAVI sweep, ELBO included: automatic CAVI derived from the Pyro model
(:func:`inference.cavi.auto_cavi`) against the hand-written sweep of
:func:`analytic.earthquake.cavi`, on the earthquake mixture, same data, same start.

The hand sweep is timed as (a fit of 1 + m sweeps - a fit of 1 sweep) / m, so its set-up is
excluded; auto-CAVI reports the time of its sweeps apart from the one-off analysis of the
model's trace (``sweep_seconds``), also reported. Interleaved runs, best of ``--repeats``;
float64; K = 10 clusters by default.

Run:  python benchmarks/auto_cavi.py [--sizes 10000 100000] [--sweeps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from analytic.earthquake import Hyperparameters, cavi, initial_mean_field
from inference.cavi import auto_cavi
from ppl_models.earthquake import model, simulate


def _hand(X, S, hp, q0, sweeps: int) -> float:
    def run(max_iter):
        start = time.perf_counter()
        cavi(X, S, hp, max_iter=max_iter, tol=0.0, init=q0)
        return time.perf_counter() - start

    return (run(1 + sweeps) - run(1)) / sweeps


def _auto(X, S, hp, q0, sweeps: int) -> tuple[float, float]:
    init = {
        "mu": {"loc": q0.loc, "scale": q0.precision.rsqrt()[:, None]},
        "lam": {"concentration": q0.concentration, "rate": q0.rate},
    }
    result = auto_cavi(model, X, S, hp, num_steps=sweeps, tol=0.0, init=init)
    return result.sweep_seconds / result.num_steps, result.analysis_seconds


def main(args) -> dict:
    hp = Hyperparameters(args.k)
    rows = []
    print(
        f"CAVI seconds per sweep (ELBO included), earthquake mixture, K={args.k}, float64, "
        f"torch threads={torch.get_num_threads()}, best of {args.repeats} interleaved"
    )
    print(f"{'N':>9}  {'hand (ms)':>10}  {'auto (ms)':>10}  {'ratio auto/hand':>15}  "
          f"{'auto analysis (s)':>17}")  # fmt: skip
    for n in args.sizes:
        X, S, *_ = simulate(hp, n, seed=0)
        q0 = initial_mean_field(X, S, hp, torch.Generator().manual_seed(0))
        _hand(X, S, hp, q0, 1), _auto(X, S, hp, q0, 1)  # warm-up
        hand, auto, analysis = [], [], []
        for _ in range(args.repeats):
            hand.append(_hand(X, S, hp, q0, args.sweeps))
            a, b = _auto(X, S, hp, q0, args.sweeps)
            auto.append(a)
            analysis.append(b)
        h, a = min(hand), min(auto)
        rows.append({"n": n, "hand_s": h, "auto_s": a, "ratio": a / h,
                     "analysis_s": min(analysis)})  # fmt: skip
        print(f"{n:>9}  {1e3 * h:>10.2f}  {1e3 * a:>10.2f}  {a / h:>15.2f}  {min(analysis):>17.2f}")
    return {"rows": rows}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="numbers of events N (default 1e4 1e5)")  # fmt: skip
    parser.add_argument("--k", type=int, default=10, help="clusters K (default 10)")
    parser.add_argument("--sweeps", type=int, default=20, help="sweeps timed (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats, best kept (default 3)")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
