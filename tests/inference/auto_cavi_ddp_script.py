"""Data-parallel automatic CAVI, launched by the tests under ``torchrun``: each rank reads its
share of a Parquet file's row groups (:class:`inference.data.ParquetChunks`) and fits a
Gaussian mixture with latent means and precisions (two stages a sweep), streamed and then
stochastic, through the project's collective.

Usage: ``torchrun --nproc-per-node P tests/inference/auto_cavi_ddp_script.py DATA.parquet
OUT.json [--nan-on-rank R]``. Rank 0 writes the ELBO histories and the final parameters to
OUT.json (written to a temporary name and renamed); with ``--nan-on-rank R`` rank R's second
chunk holds a NaN, and every rank must stop in the first pass with the same error.
"""

from __future__ import annotations

import argparse
import json
import os

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from inference.cavi import auto_cavi, stochastic_auto_cavi
from inference.data import ParquetChunks
from inference.distributed import process_group

F64 = torch.float64
START = {"mu": {"loc": torch.tensor([-4.0, 0.5, 4.0], dtype=F64),
                "scale": torch.full((3,), 0.1, dtype=F64)}}  # fmt: skip


def model(y):
    w = pyro.sample("pi", dist.Dirichlet(torch.full((3,), 1.5, dtype=F64)))
    with pyro.plate("k", 3):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=F64), 10.0))
        tau = pyro.sample("tau", dist.Gamma(torch.tensor(2.0, dtype=F64), 2.0))
    with pyro.plate("rows", len(y)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("y", dist.Normal(Vindex(mu)[..., z], Vindex(tau)[..., z] ** -0.5), obs=y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--nan-on-rank", type=int)
    args = parser.parse_args()
    with process_group(torch.device("cpu")) as group:
        data = ParquetChunks(args.data, chunk_size=50, rank=group.rank,
                             world_size=group.world_size)  # fmt: skip
        chunks = data
        if args.nan_on_rank == group.rank:

            def chunks():
                for i, chunk in enumerate(data):
                    if i == 1:
                        chunk["y"][3] = float("nan")
                    yield chunk

        streamed = auto_cavi(model, data=chunks, data_plate="rows", num_steps=8, tol=0.0,
                             init=START, check_draws=20, collective=group)  # fmt: skip
        stochastic = stochastic_auto_cavi(model, data=chunks, data_plate="rows", batch_size=40,
                                          passes=2.0, init=START, seed=1, check_draws=20,
                                          collective=group)  # fmt: skip
        if group.rank == 0:
            out = {
                "streamed": streamed.elbo_history.tolist(),
                "stochastic": stochastic.elbo_history.tolist(),
                "params": {
                    n: {k: v.tolist() for k, v in p.items()} for n, p in streamed.params.items()
                },  # fmt: skip
            }
            with open(args.out + ".tmp", "w") as f:
                json.dump(out, f)
            os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
