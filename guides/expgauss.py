r"""Exponential guide for :mod:`ppl_models.expgauss`: q(z_n) = Expo(z_n | phi_n), one phi per x_n.

The rates are stored as ``log_phi`` (N,), unconstrained, so one ``torch.optim`` optimiser can
own them. Exponential has a reparameterised sampler (z = eps/phi, eps ~ Expo(1)), so
``Trace_ELBO`` uses the pathwise gradient, and ``TraceMeanField_ELBO`` uses the closed form
KL(Expo(phi) || Expo(theta)) = log(phi/theta) + theta/phi - 1 that torch registers.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from analytic.expgauss import check_observations

__all__ = ["ExpGaussGuide"]


class ExpGaussGuide(torch.nn.Module):
    """Mean-field exponential guide, callable with the model's signature ``(x,)``.

    Args:
        phi: starting rates, a tensor of shape (N,) (one per observation), finite and > 0;
            its dtype and device are kept.
    """

    def __init__(self, phi: torch.Tensor) -> None:
        super().__init__()
        phi = torch.as_tensor(phi)
        if phi.dim() != 1 or not phi.is_floating_point():
            raise ValueError(f"phi must be a floating tensor of shape (N,), got {tuple(phi.shape)}")
        if not bool((torch.isfinite(phi) & (phi > 0)).all()):
            raise ValueError(f"phi must be finite and > 0, got {phi.tolist()}")
        self.log_phi = torch.nn.Parameter(phi.log())

    @property
    def phi(self) -> torch.Tensor:
        """The current rates, (N,)."""
        return self.log_phi.exp()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> None:
        """Sample z (N,) from q; ``x`` (N,) only fixes the plate size (further arguments of the
        model, e.g. a fixed theta, are accepted and ignored)."""
        if not torch.jit.is_tracing():  # a compiled loss traces after an eager, checked call
            check_observations(x)
            if x.shape != self.log_phi.shape:
                raise ValueError(
                    f"x has shape {tuple(x.shape)} but the guide holds {self.log_phi.shape[0]} "
                    "rates"
                )
        with pyro.plate("data", x.shape[-1], dim=-1):
            pyro.sample("z", dist.Exponential(self.phi))
