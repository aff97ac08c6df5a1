"""Automatic CAVI past memory: seconds per streamed sweep and peak memory at 10^6-10^8 rows,
1 and 2 processes, against the hand-written streamed CAVI of the earthquake mixture; a
full-covariance Gaussian mixture and LDA streamed from Parquet; stochastic auto-CAVI's exact
ELBO against passes (a plot).

Data are simulated once into ``--folder`` as Parquet (row groups of ``--chunk-size``) and
reused. Each measurement runs in a fresh process (``python``, or ``torchrun --standalone
--nproc-per-node 2`` on gloo), so that its peak resident memory (``ru_maxrss``, the largest
over the ranks) is its own. Seconds per sweep: (time of ``1 + m`` sweeps - time of 1 sweep) /
m, from the same start, after one untimed run, so the analysis and the first (checking) pass
are excluded.

* earthquake: :func:`inference.cavi.auto_cavi` on :func:`ppl_models.earthquake.model` over
  :meth:`inference.data.ParquetCatalog.chunks`, and the peer
  :func:`analytic.earthquake.streamed.streamed_cavi` over the same chunks from the same
  globals, each in its own process: the ratio auto / hand (target <= 1.5; a 10^8-row sweep
  <= 15 s and <= 2 GB on the 2-core machine).
* GMM: 2-d rows from three Gaussians; Dirichlet weights, MultivariateNormal means, Wishart
  precisions (two stages a sweep); read by :class:`inference.data.ParquetChunks`.
* LDA: ``--lda-docs`` documents, K = 10 topics over a vocabulary of 1,000; token rows
  (word, document).

Run:  python benchmarks/auto_cavi_scale.py [--sizes 1e6 1e7 1e8] [--folder /tmp/vilab-scale]
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

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from analytic.earthquake import Hyperparameters
from analytic.earthquake.streamed import data_totals, seeded_globals, streamed_cavi
from inference.cavi import auto_cavi, stochastic_auto_cavi
from inference.data import ParquetCatalog, ParquetChunks, join_pieces, simulate_parquet
from inference.distributed import process_group
from ppl_models.earthquake import model as earthquake

HP = Hyperparameters(10, tau=0.05, rho=1e-3, alpha=2.5, beta=0.2)
SAMPLE = 100_000
F64 = torch.float64
K_GMM, TOPICS, VOCAB = 3, 10, 1000


def _earthquake_file(folder: Path, n: int, chunk_size: int) -> Path:
    path = folder / f"catalog-{n:.0e}-float32-{chunk_size}.parquet".replace("+", "")
    if not path.exists():
        simulate_parquet(path, HP, n, seed=0, chunk_size=chunk_size, dtype=torch.float32,
                         progress=True)  # fmt: skip
    return path


def _write_rows(path: Path, n: int, chunk_size: int, draw) -> Path:
    """``draw(rows, generator) -> dict of numpy columns``, written chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return path
    gen = torch.Generator().manual_seed(0)
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, n, chunk_size):
        table = pa.table(draw(min(chunk_size, n - start), gen))
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=chunk_size)
    writer.close()
    os.replace(tmp, path)
    return path


def _gmm_file(folder: Path, n: int, chunk_size: int) -> Path:
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]], dtype=F64)

    def draw(rows, gen):
        x = centres[torch.randint(K_GMM, (rows,), generator=gen)]
        x = x + torch.randn(rows, 2, generator=gen, dtype=F64)
        return {"x1": x[:, 0].numpy(), "x2": x[:, 1].numpy()}

    return _write_rows(folder / f"gmm-{n:.0e}-{chunk_size}.parquet".replace("+", ""), n,
                       chunk_size, draw)  # fmt: skip


def _lda_file(folder: Path, n: int, chunk_size: int, docs: int) -> Path:
    rng = np.random.default_rng(0)
    theta = torch.from_numpy(rng.dirichlet(np.full(TOPICS, 0.5), size=docs))
    phi = torch.from_numpy(rng.dirichlet(np.full(VOCAB, 0.1), size=TOPICS))

    def draw(rows, gen):
        doc = torch.randint(docs, (rows,), generator=gen)
        topic = torch.multinomial(theta[doc], 1, generator=gen).squeeze(-1)
        words = torch.empty(rows, dtype=torch.long)
        for k in range(TOPICS):  # each topic's words at once, not a (rows, V) table of probs
            where = (topic == k).nonzero().squeeze(-1)
            if len(where):
                words[where] = torch.multinomial(phi[k], len(where), replacement=True,
                                                 generator=gen)  # fmt: skip
        return {"words": words.numpy(), "doc": doc.numpy()}

    name = f"lda-{n:.0e}-{docs}-{chunk_size}.parquet".replace("+", "")
    return _write_rows(folder / name, n, chunk_size, draw)


def gmm(x):
    """Dirichlet weights, MultivariateNormal means, Wishart precisions."""
    w = pyro.sample("pi", dist.Dirichlet(torch.full((K_GMM,), 1.5, dtype=F64)))
    with pyro.plate("k", K_GMM):
        eye = torch.eye(2, dtype=F64)
        m = pyro.sample("mu", dist.MultivariateNormal(torch.zeros(2, dtype=F64), 100.0 * eye))
        L = pyro.sample("L", dist.Wishart(torch.tensor(4.0, dtype=F64), covariance_matrix=eye / 4))
    with pyro.plate("rows", len(x)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("x", dist.MultivariateNormal(Vindex(m)[..., z, :],
                                                 precision_matrix=Vindex(L)[..., z, :, :]),
                    obs=x)  # fmt: skip


def lda(words, doc, docs: int):
    """Latent Dirichlet allocation (Blei, Ng & Jordan 2003) over token rows."""
    with pyro.plate("topics", TOPICS):
        topic_words = pyro.sample("phi", dist.Dirichlet(torch.full((VOCAB,), 0.1, dtype=F64)))
    with pyro.plate("docs", docs):
        doc_topics = pyro.sample("theta", dist.Dirichlet(torch.full((TOPICS,), 0.5, dtype=F64)))
    with pyro.plate("tokens", len(words)):
        z = pyro.sample("z", dist.Categorical(doc_topics[doc]))
        pyro.sample("w", dist.Categorical(Vindex(topic_words)[..., z, :]), obs=words)


def _earthquake_start(catalog, group):
    pieces = catalog.sample_pieces(SAMPLE, seed=0)
    sample = join_pieces([p for ps in group.gather(pieces) for p in ps], catalog.path)
    totals = data_totals(catalog.chunks, group.all_reduce_sum)
    q0 = seeded_globals(sample, totals, HP, torch.Generator().manual_seed(0))
    init = {"mu": {"loc": q0.loc, "scale": q0.precision.rsqrt()[:, None].expand(-1, 2)},
            "lam": {"concentration": q0.concentration, "rate": q0.rate}}  # fmt: skip
    return q0, init


def _worker(args) -> None:
    """One measurement in this process (or these ranks): prints one JSON line on rank 0."""
    with process_group(torch.device("cpu")) as group:
        rank, size = group.rank, group.world_size
        if args.case in ("hand", "auto"):
            catalog = ParquetCatalog(args.worker, chunk_size=args.chunk_size, rank=rank,
                                     world_size=size)  # fmt: skip
            q0, init = _earthquake_start(catalog, group)

            def sweeps(m: int) -> None:
                if args.case == "hand":
                    streamed_cavi(catalog.chunks, HP, init=q0, max_iter=m, tol=0.0,
                                  reduce=group.all_reduce_sum)  # fmt: skip
                else:
                    auto_cavi(earthquake, HP, data=catalog.chunks, data_plate="events",
                              num_steps=m, tol=0.0, init=init, check_draws=0,
                              collective=group)  # fmt: skip
        else:
            columns = {"x": ["x1", "x2"]} if args.case == "gmm" else None
            chunks = ParquetChunks(args.worker, columns, chunk_size=args.chunk_size, rank=rank,
                                   world_size=size)  # fmt: skip
            model, plate, kwargs = (gmm, "rows", {}) if args.case == "gmm" else (
                lda, "tokens", {"docs": args.lda_docs})  # fmt: skip

            def sweeps(m: int) -> None:
                auto_cavi(model, data=chunks, data_plate=plate, num_steps=m, tol=0.0,
                          check_draws=0, collective=group, **kwargs)  # fmt: skip

        sweeps(1)  # warm-up: the analysis and the first pass run as fast in each timed run
        times = []
        for m in (1, 1 + args.sweeps):
            start = time.perf_counter()
            sweeps(m)
            times.append(time.perf_counter() - start)
        result = {"per_sweep": (times[1] - times[0]) / args.sweeps, "first": times[0]}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
        result["peak_mib"] = max(group.gather(peak))
        if rank == 0:
            print(json.dumps(result), flush=True)


def _measure(path: Path, case: str, nproc: int, args) -> dict:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    command = [sys.executable, *(launcher if nproc > 1 else []), __file__, "--worker",
               str(path), "--case", case, "--chunk-size", str(args.chunk_size), "--sweeps",
               str(args.sweeps), "--lda-docs", str(args.lda_docs)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // nproc))}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _stochastic(path: Path, args) -> dict:
    """Stochastic auto-CAVI on the earthquake catalog from the full-batch run's start: the
    gap to the streamed optimum after every quarter pass."""
    catalog = ParquetCatalog(path, chunk_size=args.chunk_size)
    with process_group(torch.device("cpu")) as group:
        _, init = _earthquake_start(catalog, group)
    full = auto_cavi(earthquake, HP, data=catalog.chunks, data_plate="events", tol=1e-9,
                     init=init, check_draws=0)  # fmt: skip
    start = time.perf_counter()
    fit = stochastic_auto_cavi(earthquake, HP, data=catalog.chunks, data_plate="events",
                               batch_size=args.batch_size, passes=args.passes, init=init,
                               eval_every=0.25, check_draws=0)  # fmt: skip
    seconds = time.perf_counter() - start
    gaps = ((full.elbo - fit.elbo_history) / full.elbo.abs()).tolist()
    within = [p for p, g in zip(fit.passes.tolist(), gaps) if abs(g) <= 1e-3]
    return {"passes": fit.passes.tolist(), "gap": gaps, "full_sweeps": full.num_steps,
            "passes_to_0.1%": within[0] if within else None, "seconds": seconds}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e6, 1e7, 1e8])
    parser.add_argument("--gmm-sizes", type=float, nargs="*", default=[1e6, 1e7])
    parser.add_argument("--lda-sizes", type=float, nargs="*", default=[1e7])
    parser.add_argument("--lda-docs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-size", type=int, default=1 << 18)
    parser.add_argument("--sweeps", type=int, default=2, help="extra sweeps timed (2)")
    parser.add_argument("--stochastic-sizes", type=float, nargs="*", default=[1e6])
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--passes", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/vilab-scale"))
    parser.add_argument("--plot", type=Path, default=Path("auto_cavi_scale.png"))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        return _worker(args)

    args.folder.mkdir(parents=True, exist_ok=True)
    rows, results = [], {"scale": [], "stochastic": {}}

    def report(model: str, n: int, nproc: int, r: dict, peer: dict | None) -> None:
        ratio = (f"{peer['per_sweep']:>9.3f} {peer['peak_mib']:>9.0f} "
                 f"{r['per_sweep'] / peer['per_sweep']:>6.2f}x") if peer else ""  # fmt: skip
        rows.append(f"{model:>10} {n:>8.0e} {nproc:>5} {r['per_sweep']:>9.3f} "
                    f"{r['peak_mib']:>9.0f} {ratio}")  # fmt: skip
        results["scale"].append({"model": model, "n": n, "processes": nproc, "auto": r,
                                 "hand": peer})  # fmt: skip
        print(rows[-1], flush=True)

    for n in map(int, args.sizes):
        path = _earthquake_file(args.folder, n, args.chunk_size)
        for nproc in args.processes:
            hand = _measure(path, "hand", nproc, args)
            auto = _measure(path, "auto", nproc, args)
            report("earthquake", n, nproc, auto, hand)
    for n in map(int, args.gmm_sizes):
        path = _gmm_file(args.folder, n, args.chunk_size)
        for nproc in args.processes:
            report("GMM", n, nproc, _measure(path, "gmm", nproc, args), None)
    for n in map(int, args.lda_sizes):
        path = _lda_file(args.folder, n, args.chunk_size, args.lda_docs)
        for nproc in args.processes:
            report("LDA", n, nproc, _measure(path, "lda", nproc, args), None)
    for n in map(int, args.stochastic_sizes):
        path = _earthquake_file(args.folder, n, args.chunk_size)
        results["stochastic"][n] = s = _stochastic(path, args)
        print(f"stochastic N={n:.0e}: within 0.1% after {s['passes_to_0.1%']} passes "
              f"(full batch: {s['full_sweeps']} sweeps)", flush=True)  # fmt: skip
    header = (f"{'model':>10} {'rows':>8} {'procs':>5} {'s/sweep':>9} {'peak MiB':>9} "
              f"{'hand':>9} {'hand MiB':>9} {'ratio':>7}")  # fmt: skip
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
        ax.set(xlabel="passes over the data", ylabel="(ELBO* - ELBO) / |ELBO*|",
               title=f"stochastic auto-CAVI, batches of {args.batch_size}")  # fmt: skip
        ax.legend()
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
