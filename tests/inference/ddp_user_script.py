"""A user's data-parallel SVI, launched by the tests under ``torchrun``: Pyro's ``AutoNormal``
on a model we did not write (the Bayesian linear regression of Pyro's "Bayesian Regression"
tutorial, with its constrained noise scale ``sigma ~ Uniform(0, 10)``), each rank fitting its
share of the rows with the likelihood scaled by the number of processes.

Usage: ``torchrun --nproc-per-node P tests/inference/ddp_user_script.py OUT.json [--nan-on-rank
R]``.
Rank 0 writes the ELBO history and the final parameters to OUT.json; with ``--nan-on-rank R``
rank R's first row is NaN, and every rank must stop at step 0 with the same error.
"""

from __future__ import annotations

import argparse
import json

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoNormal

from inference.distributed import process_group
from inference.estimators import get_elbo
from inference.svi import fit_svi

NUM_ROWS = 170


def model(x, y, likelihood_scale=1.0):
    """Pyro tutorial "Bayesian Regression - Introduction (Part 1)", written as a plain model."""
    a = pyro.sample("a", dist.Normal(0.0, 10.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
    mean = a + x @ b
    with poutine.scale(scale=likelihood_scale), pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mean, sigma), obs=y)


def data(rank: int, world_size: int):
    """Rows ``rank, rank + P, ...`` of one fixed data set (float64)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(NUM_ROWS, 2, generator=g, dtype=torch.float64)
    y = 1.5 + x @ torch.tensor([2.0, -0.7], dtype=torch.float64)
    y = y + 0.8 * torch.randn(NUM_ROWS, generator=g, dtype=torch.float64)
    return x[rank::world_size], y[rank::world_size]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--nan-on-rank", type=int)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    with process_group(torch.device("cpu")) as group:
        x, y = data(group.rank, group.world_size)
        if args.nan_on_rank == group.rank:
            y[0] = float("nan")
        guide = AutoNormal(model)
        pyro.set_rng_seed(1)
        guide(x, y)  # an autoguide makes its parameters at its first call
        fit = fit_svi(
            model, guide, get_elbo("trace"), x, y, likelihood_scale=float(group.world_size),
            num_steps=60, lr=0.05, seed=2, progress=False, group=group,
        )  # fmt: skip
        if group.rank == 0:
            median = {k: v.tolist() for k, v in guide.median().items()}
            with open(args.out, "w") as f:
                json.dump({"elbo": fit.elbo_history.tolist(), "median": median}, f)


if __name__ == "__main__":
    main()
