r"""The earthquake mixture as a Pyro model (the generative story, no inference code).

::

    mu_k          ~ N_2(nu, rho^{-1} I)        k = 1..K   (plate "cluster")
    lambda_k      ~ Gamma(alpha, beta)                    (shape, rate)
    Z_n           ~ Cat(pi)                    n = 1..N   (plate "events", subsamplable)
    X_n | Z_n = k ~ N_2(mu_k, tau^{-1} I)
    S_n | Z_n = k ~ Poisson(lambda_k)

Sites: ``mu`` (K, 2), ``lam`` (K,), ``z`` (N,), observed ``x`` (N, 2) and ``s`` (N,). Both plates
sit at dim -1 (``max_plate_nesting = 1``); the cluster parameters are gathered with
:class:`~pyro.ops.indexing.Vindex`, so the model runs unchanged with Z sampled, with Z
enumerated in parallel (``TraceEnum_ELBO``), with ``vectorize_particles=True``, and with
``subsample_size`` (the likelihood is then scaled by N / subsample_size).

``likelihood_scale`` multiplies every event's log-likelihood on top of that: data-parallel SVI
on P processes passes P, so that each rank's loss ``KL - P (N_r / B) sum_batch`` is an
unbiased estimate of the whole catalog's and the average of the ranks' gradients (what
``DistributedDataParallel`` computes) estimates the full-data gradient, whatever the shares N_r.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.ops.indexing import Vindex

from analytic.earthquake import Hyperparameters, check_data

__all__ = ["MAX_PLATE_NESTING", "model", "simulate", "simulate_chunks"]

MAX_PLATE_NESTING = 1


def _priors(hp: Hyperparameters, like: torch.Tensor):
    kw = {"dtype": like.dtype, "device": like.device}
    nu = torch.tensor(hp.nu, **kw)
    K = hp.num_clusters
    mu_prior = dist.Normal(nu, hp.rho**-0.5).expand([K, 2]).to_event(1)
    lam_prior = dist.Gamma(torch.tensor(hp.alpha, **kw), torch.tensor(hp.beta, **kw)).expand([K])
    mixing = torch.tensor(hp.mixing, **kw)
    return mu_prior, lam_prior, mixing


def model(
    X: torch.Tensor,
    S: torch.Tensor,
    hp: Hyperparameters,
    subsample_size: int | None = None,
    likelihood_scale: float = 1.0,
) -> None:
    """Condition the earthquake mixture on locations ``X`` (N, 2) and strengths ``S`` (N,).

    Args:
        X: (N, 2) floating locations. S: (N,) non-negative integer strengths (any float dtype).
        hp: hyperparameters. subsample_size: events per step for minibatch SVI (None = all).
        likelihood_scale: a factor > 0 on the events' log-likelihood (module docstring; 1 =
            this model as written).
    """
    if not (isinstance(likelihood_scale, (int, float)) and 0 < likelihood_scale < math.inf):
        raise ValueError(f"likelihood_scale must be a finite number > 0, got {likelihood_scale!r}")
    mu_prior, lam_prior, mixing = _priors(hp, X)
    with pyro.plate("cluster", hp.num_clusters, dim=-1):
        mu = pyro.sample("mu", mu_prior)  # (..., K, 2)
        lam = pyro.sample("lam", lam_prior)  # (..., K)
    with (
        poutine.scale(scale=likelihood_scale),
        pyro.plate("events", X.shape[0], subsample_size=subsample_size, dim=-1) as idx,
    ):
        z = pyro.sample("z", dist.Categorical(mixing))
        # Insert a size-1 dim for the event plate so that the leading (particle) dims of mu and
        # lam line up with those of z, whether z is sampled (..., B) or enumerated (K, 1, ...).
        loc = Vindex(mu.unsqueeze(-3))[..., z, :]
        rate = Vindex(lam.unsqueeze(-2))[..., z]
        pyro.sample("x", dist.Normal(loc, hp.tau**-0.5).to_event(1), obs=X[idx])
        pyro.sample("s", dist.Poisson(rate), obs=S[idx].to(X.dtype))


def simulate(
    hp: Hyperparameters,
    num_events: int,
    seed: int,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a catalog from the prior predictive, reproducibly and without touching global RNG.

    Args:
        hp: hyperparameters. num_events: N >= 1. seed: integer seed.

    Returns:
        (X (N, 2), S (N,) integer-valued floats, Z (N,) long, mu (K, 2), lam (K,)).
    """
    if isinstance(num_events, bool) or not isinstance(num_events, int) or num_events < 1:
        raise ValueError(f"num_events must be an integer >= 1, got {num_events!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mu_prior, lam_prior, mixing = _priors(hp, torch.empty((), dtype=dtype))
        mu, lam = mu_prior.sample(), lam_prior.sample()
        Z = dist.Categorical(mixing).sample([num_events])
        X = dist.Normal(mu[Z], hp.tau**-0.5).sample()
        S = dist.Poisson(lam[Z]).sample()
    check_data(X, S)
    return X, S, Z, mu, lam


def simulate_chunks(
    hp: Hyperparameters,
    num_events: int,
    seed: int,
    chunk_size: int,
    dtype: torch.dtype = torch.float64,
):
    """A catalog from the prior predictive drawn chunk by chunk, never held whole.

    The globals are drawn first, as in :func:`simulate` (so ``mu`` and ``lam`` equal its own
    for the same seed); the events are then drawn ``chunk_size`` at a time from a
    ``torch.Generator`` seeded with ``seed``: ``Z ~ Cat(pi)`` by ``torch.multinomial``,
    ``X = mu_Z + tau^{-1/2} eps`` with ``eps ~ N(0, I)``, ``S ~ Poisson(lam_Z)``. The draws
    of the events differ from :func:`simulate`'s (another stream), not their distribution.

    Returns:
        (mu (K, 2), lam (K,), chunks): ``chunks`` yields ``(X (n, 2), S (n,))`` with
        n = chunk_size except for the last; the N events in order.
    """
    for name, value in (("num_events", num_events), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mu_prior, lam_prior, mixing = _priors(hp, torch.empty((), dtype=dtype))
        mu, lam = mu_prior.sample(), lam_prior.sample()

    def chunks():
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, num_events, chunk_size):
            n = min(chunk_size, num_events - start)
            Z = torch.multinomial(mixing, n, replacement=True, generator=generator)
            eps = torch.randn(n, 2, generator=generator, dtype=dtype)
            X = mu[Z] + hp.tau**-0.5 * eps
            S = torch.poisson(lam[Z], generator=generator)
            yield X, S

    return mu, lam, chunks()
