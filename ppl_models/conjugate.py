r"""The conjugate Gaussian model as a Pyro model (closed forms in :mod:`analytic.conjugate`).

::

    z ~ N(0, Sigma_0)  (D-dimensional; Sigma_0 = L_0 L_0^T)
    x_n | z ~ N(z, sigma^2 I)    n = 1..N   (plate "data", dim -1)

Sites: ``z`` (D,) and observed ``x`` (N, D). Its exact posterior is Gaussian, so a Gaussian guide
can match it exactly: the test bed of the path-derivative estimator.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

__all__ = ["MAX_PLATE_NESTING", "model", "simulate"]

MAX_PLATE_NESTING = 1


def model(x: torch.Tensor, prior_scale_tril: torch.Tensor, obs_scale: float) -> None:
    """Condition on ``x`` (N, D) with prior Cholesky factor (D, D) and noise sd ``obs_scale``."""
    D = x.shape[-1]
    z = pyro.sample(
        "z", dist.MultivariateNormal(torch.zeros(D, dtype=x.dtype), scale_tril=prior_scale_tril)
    )
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("x", dist.Normal(z, obs_scale).to_event(1), obs=x)


def simulate(
    prior_scale_tril: torch.Tensor, obs_scale: float, num_obs: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (x (num_obs, D), z (D,)) from the model."""
    gen = torch.Generator().manual_seed(seed)
    D = prior_scale_tril.shape[0]
    z = prior_scale_tril @ torch.randn(D, generator=gen, dtype=prior_scale_tril.dtype)
    x = z + obs_scale * torch.randn(num_obs, D, generator=gen, dtype=prior_scale_tril.dtype)
    return x, z
