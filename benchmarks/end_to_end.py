"""Start-up and end-to-end seconds of ``vilab`` commands against NumPyro's equivalent script.

Each row is a fresh process, timed from the shell's side (imports, compiles, plots and files
included), ``--repeats`` times, in this order per round so that the machine's state is shared:

    vilab --help                                (start-up: the parser alone)
    vilab earthquake (default: torchscript)     N = 1,000, K = 3, 1,000 SVI steps
    vilab earthquake --jit-backend step, cold   vilab's Inductor cache emptied first
    vilab earthquake --jit-backend step, warm   the same run again: compiled step from the cache
    python benchmarks/numpyro_earthquake.py     the same fit, NumPyro's way (JAX jit)

Printed: seconds of each (min, median, max over the rounds) and each vilab row / NumPyro's.

Run:  pip install -e ".[bench]"
      python benchmarks/end_to_end.py [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vilab.report import format_table

HERE = Path(__file__).resolve().parent


def _seconds(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vilab-e2e-"))
    env = {**os.environ, "VILAB_CACHE_DIR": str(work / "cache"), "JAX_PLATFORMS": "cpu"}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    vilab = [sys.executable, "-m", "vilab"]
    quake = [*vilab, "earthquake", "--quiet", "--out"]
    rows = {
        "vilab --help": lambda: _seconds([*vilab, "--help"], env),
        "vilab earthquake (default)": lambda: _seconds([*quake, str(work / "a")], env),
        "vilab earthquake --jit-backend step, cold": lambda: (
            shutil.rmtree(work / "cache", ignore_errors=True),
            _seconds([*quake, str(work / "b"), "--jit-backend", "step"], env),
        )[1],
        "vilab earthquake --jit-backend step, warm": lambda: _seconds(
            [*quake, str(work / "c"), "--jit-backend", "step"], env
        ),
    }
    if not args.no_numpyro:
        script = [sys.executable, str(HERE / "numpyro_earthquake.py"), str(work / "n")]
        rows["NumPyro script (numpyro_earthquake.py)"] = lambda: _seconds(script, env)
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            times[name].append(fn())
    shutil.rmtree(work, ignore_errors=True)
    numpyro = statistics.median(times["NumPyro script (numpyro_earthquake.py)"]) \
        if not args.no_numpyro else None  # fmt: skip
    table = [["run", "min s", "median s", "max s", "median / NumPyro"]]
    for name, values in times.items():
        ratio = "-" if numpyro is None else f"{statistics.median(values) / numpyro:.2f}"
        table.append([name, f"{min(values):.2f}", f"{statistics.median(values):.2f}",
                      f"{max(values):.2f}", ratio])  # fmt: skip
    print(f"end to end, {args.repeats} rounds, one fresh process each")
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps(times, indent=2))
    return times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds (3)")
    parser.add_argument("--no-numpyro", action="store_true", help="time ours only")
    parser.add_argument("--json", metavar="FILE", help="also write the seconds as JSON")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
