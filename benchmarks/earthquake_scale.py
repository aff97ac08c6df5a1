"""Streamed CAVI at 10^6-10^8 events: seconds per sweep and peak memory, 1 and 2 processes,
against in-memory CAVI where it fits; stochastic CAVI's exact ELBO against passes.

Catalogs are simulated once into ``--folder`` (planar Parquet, row groups of ``--chunk-size``,
coordinates stored as float32 or float64; the arithmetic is float64 either way) and reused.
Each measurement runs in a fresh process (``python``, or ``torchrun --standalone
--nproc-per-node 2`` on gloo), so that its peak resident memory (``ru_maxrss``, the largest
over the ranks) is its own. Seconds per sweep: (time of ``1 + m`` sweeps - time of 1 sweep) /
m, both from the same start, so the first pass (row checks, data totals) is excluded. The
baseline, in the same run: :func:`analytic.earthquake.cavi` on the catalog in memory, timed
the same way (from 10^7 events on, its (N, K) float64 responsibilities alone take 0.8 GB).

Stochastic CAVI: from the seeding of the full-batch run, batches of ``--batch-size``; the gap
to the full-batch optimum after every quarter pass, the passes to come within 0.1%, and a plot.

Data-parallel SVI (``--svi-sizes``): seconds per step of SVI of the model with Z summed out
(:class:`guides.earthquake.GlobalsGuide`, ``TraceEnum_ELBO``, every event of the process's share
in every step), 1 and 2 processes, DistributedDataParallel on gloo; the baseline is the same
code in one process. Timed as the sweeps are: (1 + m steps - 1 step) / m.

Run:  python benchmarks/earthquake_scale.py [--sizes 1e6 1e7 1e8] [--folder /tmp/vilab-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import config_enumerate

from analytic.earthquake import Hyperparameters, cavi
from analytic.earthquake.stochastic import stochastic_cavi
from analytic.earthquake.streamed import data_totals, seeded_globals, streamed_cavi
from guides.earthquake import GlobalsGuide
from inference.data import ParquetCatalog, join_pieces, simulate_parquet
from inference.distributed import process_group
from inference.estimators import get_elbo
from inference.svi import SVIStep
from ppl_models.earthquake import MAX_PLATE_NESTING, model

HP = Hyperparameters(10, tau=0.05, rho=1e-3, alpha=2.5, beta=0.2)
SAMPLE = 100_000


def _catalog(folder: Path, n: int, dtype: str, chunk_size: int) -> Path:
    path = folder / f"catalog-{n:.0e}-{dtype}-{chunk_size}.parquet".replace("+", "")
    if not path.exists():
        start = time.perf_counter()
        simulate_parquet(path, HP, n, seed=0, chunk_size=chunk_size,
                         dtype=getattr(torch, dtype), progress=True)  # fmt: skip
        print(f"  simulated {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
    return path


def _worker(args) -> None:
    """One measurement in this process (or these ranks): prints one JSON line on rank 0."""
    with process_group(torch.device("cpu")) as group:
        catalog = ParquetCatalog(args.worker, chunk_size=args.chunk_size, rank=group.rank,
                                 world_size=group.world_size)  # fmt: skip
        pieces = catalog.sample_pieces(SAMPLE, seed=0)
        sample = join_pieces([p for ps in group.gather(pieces) for p in ps], args.worker)
        reduce = group.all_reduce_sum
        totals = data_totals(catalog.chunks, reduce)
        q0 = seeded_globals(sample, totals, HP, torch.Generator().manual_seed(0))

        def sweeps(m: int) -> float:
            start = time.perf_counter()
            streamed_cavi(catalog.chunks, HP, init=q0, max_iter=m, tol=0.0, reduce=reduce)
            return time.perf_counter() - start

        if args.svi:
            result = {"per_step": _svi_seconds(catalog, sample, totals, group, args.sweeps)}
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            result["peak_mib"] = max(group.gather(peak))
            if group.rank == 0:
                print(json.dumps(result), flush=True)
            return
        t1 = sweeps(1)
        t2 = sweeps(1 + args.sweeps)
        result = {"per_sweep": (t2 - t1) / args.sweeps}
        if args.in_memory and group.world_size == 1:
            X, S = catalog.load()[:2]

            def in_memory(m: int) -> float:
                init = q0._replace(
                    probs=torch.full(
                        (X.shape[0], HP.num_clusters), 1.0 / HP.num_clusters, dtype=torch.float64
                    )
                )
                start = time.perf_counter()
                cavi(X, S, HP, init=init, max_iter=m, tol=0.0)
                return time.perf_counter() - start

            result["in_memory_per_sweep"] = (in_memory(1 + args.sweeps) - in_memory(1)) / (
                args.sweeps
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
        result["peak_mib"] = max(group.gather(peak))
        if group.rank == 0:
            print(json.dumps(result), flush=True)


def _svi_seconds(catalog, sample, totals, group, m: int) -> float:
    """Seconds per data-parallel SVI step over this rank's share (module docstring)."""
    X, S = catalog.load()[:2]
    init = seeded_globals(sample, totals, HP, torch.Generator().manual_seed(0))
    pyro.set_rng_seed(0)
    step = SVIStep(config_enumerate(model), GlobalsGuide.for_svi(init, HP),
                   get_elbo("enum", max_plate_nesting=MAX_PLATE_NESTING), lr=0.01,
                   group=group)  # fmt: skip

    def steps(k: int) -> float:
        start = time.perf_counter()
        for _ in range(k):
            step(X, S, HP, likelihood_scale=float(group.world_size))
        return time.perf_counter() - start

    return (steps(1 + m) - steps(1)) / m


def _measure(path: Path, nproc: int, args, in_memory: bool, svi: bool = False) -> dict:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    command = [sys.executable, *(launcher if nproc > 1 else []), __file__, "--worker",
               str(path), "--chunk-size", str(args.chunk_size), "--sweeps", str(args.sweeps),
               *(["--in-memory"] if in_memory else []), *(["--svi"] if svi else [])]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // nproc))}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _stochastic(path: Path, args) -> dict:
    catalog = ParquetCatalog(path, chunk_size=args.chunk_size)
    sample = catalog.sample(SAMPLE, seed=0)
    full = streamed_cavi(catalog.chunks, HP, sample=sample, num_init=1, seed=0, tol=1e-9)
    start = time.perf_counter()
    r = stochastic_cavi(catalog.chunks, HP, batch_size=args.batch_size, passes=args.passes,
                        sample=sample, seed=0, eval_every=0.25)  # fmt: skip
    seconds = time.perf_counter() - start
    gaps = ((full.elbo - r.elbo_history) / full.elbo.abs()).tolist()
    within = [p for p, g in zip(r.passes.tolist(), gaps) if abs(g) <= 1e-3]
    return {"passes": r.passes.tolist(), "gap": gaps, "full_sweeps": full.num_iter,
            "passes_to_0.1%": within[0] if within else None, "seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-size", type=int, default=1 << 18)
    parser.add_argument("--sweeps", type=int, default=2, help="extra sweeps timed (2)")
    parser.add_argument("--in-memory-max", type=float, default=1e7,
                        help="largest N for the in-memory baseline (1e7)")  # fmt: skip
    parser.add_argument("--stochastic-sizes", type=float, nargs="*", default=[1e6, 1e7])
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--passes", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/vilab-scale"))
    parser.add_argument("--plot", type=Path, default=Path("earthquake_scale.png"))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--svi-sizes", type=float, nargs="*", default=[1e6])
    parser.add_argument("--in-memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--svi", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        return _worker(args)

    args.folder.mkdir(parents=True, exist_ok=True)
    rows, results = [], {"streamed": [], "stochastic": {}, "svi": []}
    for n in map(int, args.sizes):
        for dtype in args.dtypes:
            path = _catalog(args.folder, n, dtype, args.chunk_size)
            for nproc in args.processes:
                in_memory = nproc == 1 and n <= args.in_memory_max and dtype == "float64"
                r = _measure(path, nproc, args, in_memory) | {"n": n, "dtype": dtype,
                                                               "processes": nproc}  # fmt: skip
                results["streamed"].append(r)
                base = r.get("in_memory_per_sweep")
                ratio = f"{base:>10.3f} {r['per_sweep'] / base:>7.2f}x" if base else ""
                rows.append(f"{n:>10.0e} {dtype:>8} {nproc:>5} {r['per_sweep']:>10.3f} "
                            f"{r['peak_mib']:>9.0f} {ratio}")  # fmt: skip
                print(rows[-1], flush=True)
    for n in map(int, args.stochastic_sizes):
        path = _catalog(args.folder, n, "float64", args.chunk_size)
        results["stochastic"][n] = s = _stochastic(path, args)
        print(f"stochastic N={n:.0e}: within 0.1% after {s['passes_to_0.1%']} passes "
              f"(full batch: {s['full_sweeps']} sweeps)", flush=True)  # fmt: skip
    for n in map(int, args.svi_sizes):
        path = _catalog(args.folder, n, "float64", args.chunk_size)
        base = None
        for nproc in args.processes:
            r = _measure(path, nproc, args, False, svi=True) | {"n": n, "processes": nproc}
            results["svi"].append(r)
            base = base or r["per_step"]
            print(f"data-parallel SVI N={n:.0e}, {nproc} process(es): {r['per_step']:.3f} s/step "
                  f"({r['per_step'] / base:.2f}x one process), peak {r['peak_mib']:.0f} MiB",
                  flush=True)  # fmt: skip
    header = f"{'N':>10} {'storage':>8} {'procs':>5} {'s/sweep':>10} {'peak MiB':>9} " \
             f"{'in-memory':>10} {'ratio':>8}"  # fmt: skip
    print("\n" + header + "\n" + "\n".join(rows))
    if results["stochastic"]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for n, s in results["stochastic"].items():
            ax.semilogy(s["passes"], [max(abs(g), 1e-8) for g in s["gap"]], "o-",
                        label=f"N = {n:.0e}")  # fmt: skip
        ax.axhline(1e-3, color="grey", ls="--", label="0.1%")
        ax.set(xlabel="passes over the catalog", ylabel="(ELBO* - ELBO) / |ELBO*|",
               title=f"stochastic CAVI, batches of {args.batch_size}")  # fmt: skip
        ax.legend()
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
