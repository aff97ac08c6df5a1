r"""The ring mixture (:mod:`analytic.ring`) as Pyro models, the assignment enumerated.

::

    z_n       ~ Cat(pi)                    n = 1..N   (plate "data")
    x_n | z_n ~ N_2(mu_{z_n}, I)

:func:`model` takes the means and weights as given: with ``z`` enumerated in parallel
(``@config_enumerate``), ``TraceEnum_ELBO`` with an empty guide sums z out exactly, so its loss
is -sum_n log p(x_n). :func:`bayes_model` puts a Dirichlet prior on the weights and Normal
priors on the means (the conjugate model of :mod:`analytic.ring_bayes`). :func:`ml_model` makes
the means and weights latent under flat (improper) priors on R^{K x 2} and the simplex, so the
MAP that ``AutoDelta`` finds is the maximum-likelihood estimate that EM finds
(:func:`analytic.ring.em`). ``max_plate_nesting = 1``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.ops.indexing import Vindex

__all__ = ["MAX_PLATE_NESTING", "bayes_model", "ml_model", "model"]

MAX_PLATE_NESTING = 1


@pyro.infer.config_enumerate
def model(X: torch.Tensor, means: torch.Tensor, weights: torch.Tensor | None = None) -> None:
    """x_n ~ sum_k pi_k N(mu_k, I): X (N, 2), means (K, 2), weights (K,) (uniform if None)."""
    K = means.shape[0]
    if weights is None:
        weights = torch.full((K,), 1.0 / K, dtype=X.dtype, device=X.device)
    with pyro.plate("data", X.shape[0]):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(Vindex(means)[z], 1.0).to_event(1), obs=X)


def ml_model(X: torch.Tensor, num_components: int) -> None:
    """:func:`model` with ``means`` (K, 2) and ``weights`` (K,) latent under flat priors
    (``ImproperUniform``: log density 0), so MAP = maximum likelihood."""
    K = num_components
    means = pyro.sample("means", dist.ImproperUniform(constraints.real, (), (K, 2)))
    weights = pyro.sample("weights", dist.ImproperUniform(constraints.simplex, (), (K,)))
    model(X, means, weights)


def bayes_model(
    X: torch.Tensor,
    num_components: int,
    concentration: float = 1.0,
    prior_loc: tuple[float, float] = (0.0, 0.0),
    prior_precision: float = 0.01,
) -> None:
    """pi ~ Dir(concentration 1_K), mu_k ~ N_2(prior_loc, prior_precision^-1 I),
    z_n ~ Cat(pi), x_n ~ N_2(mu_{z_n}, I): X (N, 2). Sites ``pi`` (K,), ``mu`` (K, 2), ``z``."""
    K = num_components
    kw = {"dtype": X.dtype, "device": X.device}
    pi = pyro.sample("pi", dist.Dirichlet(torch.full((K,), float(concentration), **kw)))
    with pyro.plate("components", K):
        loc = torch.tensor(prior_loc, **kw)
        mu = pyro.sample("mu", dist.Normal(loc, prior_precision**-0.5).expand([K, 2]).to_event(1))
    with pyro.plate("data", X.shape[0]):
        z = pyro.sample("z", dist.Categorical(pi))
        pyro.sample("x", dist.Normal(Vindex(mu.unsqueeze(-3))[..., z, :], 1.0).to_event(1), obs=X)
