r"""Gaussian guides for :mod:`ppl_models.conjugate`: q(z) = N(loc, L L^T).

``full=True``: full-rank, ``MultivariateNormal(loc, scale_tril=L)`` with L stored as its
strictly-lower part plus log of the diagonal. ``full=False``: diagonal,
``Normal(loc, scale).to_event(1)`` with log scale stored. Both are reparameterised.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

__all__ = ["GaussianGuide"]


class GaussianGuide(torch.nn.Module):
    """Gaussian guide, callable with the model's signature.

    Args:
        loc: (D,) starting mean. scale_tril: (D, D) starting lower Cholesky factor with a
            positive diagonal (only its diagonal is used when ``full=False``).
        full: full-rank (True) or diagonal (False) covariance.
    """

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor, full: bool = True) -> None:
        super().__init__()
        D = loc.shape[-1]
        if loc.shape != (D,) or scale_tril.shape != (D, D):
            raise ValueError(
                f"loc must be (D,) and scale_tril (D, D), got {tuple(loc.shape)} and "
                f"{tuple(scale_tril.shape)}"
            )
        if not bool((torch.diagonal(scale_tril) > 0).all()):
            raise ValueError("scale_tril must have a positive diagonal")
        self.full = full
        self.loc = torch.nn.Parameter(loc.clone())
        self.log_diag = torch.nn.Parameter(torch.log(torch.diagonal(scale_tril)).clone())
        if full:
            self.strict_lower = torch.nn.Parameter(torch.tril(scale_tril, -1).clone())

    @property
    def scale_tril(self) -> torch.Tensor:
        """(D, D) current Cholesky factor of q's covariance."""
        diag = torch.diag_embed(self.log_diag.exp())
        return diag + torch.tril(self.strict_lower, -1) if self.full else diag

    def distribution(self) -> dist.TorchDistribution:
        if self.full:
            return dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril)
        return dist.Normal(self.loc, self.log_diag.exp()).to_event(1)

    def forward(self, x, *args, **kwargs) -> None:
        pyro.sample("z", self.distribution())
