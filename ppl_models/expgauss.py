r"""The exponential-Gaussian model as a Pyro model (the generative story, no inference code).

::

    z_n     ~ Expo(theta)      n = 1..N   (plate "data", dim -1; theta shared)
    x_n | z ~ N(z_n, 1)

Sites: ``z`` (N,) and observed ``x`` (N,). With N = 1 this is the single-observation model of
Exercise Sheet 02 of "Machine Learning for Graphs and Sequential Data", Problem 1, whose closed
forms live in :mod:`analytic.expgauss`.
:class:`ExpGaussModel` holds theta as a learnable parameter (stored as log theta), so SVI
learns theta and the guide's phi together (variational EM).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from analytic.expgauss import check_observations

__all__ = ["MAX_PLATE_NESTING", "ExpGaussModel", "model", "simulate"]

MAX_PLATE_NESTING = 1


def model(x: torch.Tensor, theta: torch.Tensor) -> None:
    """Condition the model on observations ``x`` (N,) at prior rate ``theta`` (0-dim, > 0)."""
    with pyro.plate("data", x.shape[-1], dim=-1):
        z = pyro.sample("z", dist.Exponential(theta))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


class ExpGaussModel(torch.nn.Module):
    """:func:`model` with theta learnable: ``theta = exp(log_theta)``.

    Args:
        theta: the starting prior rate, a finite number > 0.
        dtype: of the parameter (default: torch's default dtype).
    """

    def __init__(self, theta: float, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not (isinstance(theta, (int, float)) and 0 < theta < float("inf")):
            raise ValueError(f"theta must be a finite number > 0, got {theta!r}")
        dtype = dtype or torch.get_default_dtype()
        self.log_theta = torch.nn.Parameter(torch.tensor(float(theta), dtype=dtype).log())

    @property
    def theta(self) -> torch.Tensor:
        """The current prior rate, 0-dim."""
        return self.log_theta.exp()

    def forward(self, x: torch.Tensor) -> None:
        """Run :func:`model` on ``x`` (N,)."""
        if not torch.jit.is_tracing():  # a compiled loss traces after an eager, checked call
            check_observations(x)
        model(x, self.theta)


def simulate(
    theta: float, num_obs: int, seed: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (x, z), each (num_obs,), from the model at prior rate ``theta``."""
    if not (isinstance(theta, (int, float)) and 0 < theta < float("inf")):
        raise ValueError(f"theta must be a finite number > 0, got {theta!r}")
    if isinstance(num_obs, bool) or not isinstance(num_obs, int) or num_obs < 1:
        raise ValueError(f"num_obs must be an integer >= 1, got {num_obs!r}")
    gen = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.get_default_dtype()
    z = torch.empty(num_obs, dtype=dtype).exponential_(generator=gen) / theta
    x = z + torch.randn(num_obs, generator=gen, dtype=dtype)
    return x, z
