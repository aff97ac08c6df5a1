"""What other busy processes cost us: one CAVI sweep (N = 2e5 events, K = 5) timed quiet and
beside ``--load`` CPU-bound processes, with torch's thread pool spinning (libgomp's default,
``OMP_WAIT_POLICY=ACTIVE``) or sleeping (``PASSIVE``, what ``vilab`` sets) while it waits,
and with 1 thread or torch's default (one per core). Each setting runs in a fresh process,
since OpenMP reads its wait policy once, when torch is loaded.

The baseline is the same setting on the quiet machine; the "fair" column is the time one
would expect from a fair share of the cores, quiet time x (load + 1) / cores when the load
leaves fewer cores than threads (never less than the quiet time).

Run:  python benchmarks/busy_machine.py [--load 2] [--events 200000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_SWEEP = r"""
import sys, time, torch
from analytic import earthquake as eq
from ppl_models.earthquake import simulate
torch.set_num_threads(int(sys.argv[1]))
hp = eq.Hyperparameters(5, tau=0.5, rho=0.01)
X, S, *_ = simulate(hp, int(sys.argv[2]), seed=0)
G, consts = eq._design(X, S), eq._data_constants(X, S)
q = eq.initial_mean_field(X, S, hp, torch.Generator().manual_seed(0))
for _ in range(3):
    eq._cavi_step(G, consts, hp, q)
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    eq._cavi_step(G, consts, hp, q)
    times.append(time.perf_counter() - start)
print(sorted(times)[len(times) // 2])
"""


_SPIN = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass"


def _sweep_ms(policy: str, threads: int, events: int, repeats: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    out = subprocess.run(
        [sys.executable, "-c", _SWEEP, str(threads), str(events), str(repeats)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return 1000 * float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, default=2, help="busy processes beside us (2)")
    parser.add_argument("--events", type=int, default=200_000, help="N (200000)")
    parser.add_argument("--repeats", type=int, default=15, help="timed sweeps, median (15)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    default = min(cores, os.cpu_count() or 1)
    settings = [(p, t) for p in ("ACTIVE", "PASSIVE") for t in sorted({1, default})]
    quiet = {s: _sweep_ms(*s, args.events, args.repeats) for s in settings}
    loaded = {
        where: _loaded(settings, args, new_session=where == "other sessions")
        for where in ("same session", "other sessions")
    }
    print(f"one CAVI sweep, N={args.events}, K=5; {cores} cores; median of {args.repeats}; "
          f"busy: {args.load} CPU-bound processes")  # fmt: skip
    print(f"{'wait policy':>11} {'threads':>7} {'quiet ms':>9} {'fair ms':>8} "
          f"{'busy, same session':>20} {'busy, other sessions':>21}")  # fmt: skip
    for policy, threads in settings:
        q = quiet[policy, threads]
        fair = max(q, q * threads * (args.load + 1) / cores) if args.load else q
        cells = [loaded[w][policy, threads] for w in ("same session", "other sessions")]
        shown = [f"{b:8.1f} ({b / q:5.2f}x)" for b in cells]
        print(f"{policy:>11} {threads:>7} {q:9.1f} {fair:8.1f} {shown[0]:>20} {shown[1]:>21}")


def _loaded(settings, args, new_session: bool) -> dict:
    """Times of each setting beside ``args.load`` spinning processes. In a session of their own
    they are like jobs started from another terminal, and Linux's autogroup (when enabled)
    shares the CPU between sessions first; in ours, like a shell's background jobs or make -j.
    """
    busy = [
        subprocess.Popen([sys.executable, "-c", _SPIN], start_new_session=new_session)
        for _ in range(args.load)
    ]
    try:
        time.sleep(1.0)
        return {s: _sweep_ms(*s, args.events, args.repeats) for s in settings}
    finally:
        for p in busy:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
