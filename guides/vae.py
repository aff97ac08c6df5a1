r"""The VAE's amortised guide: q(z | x) = N(mu(x), diag sigma(x)^2), an encoder MLP.

Encoder (Assignment 1B of KTH DD2434, R. Darous's solution 2023, annex 5.1): 784 -> hidden ->
... -> hidden with LeakyReLU(0.2), then two linear heads for the mean and log sigma^2 (the
source's ``log_var``), sigma = exp(log_var / 2). Reparameterised (z = mu + sigma eps), so
``Trace_ELBO`` and STL use the pathwise gradient and ``TraceMeanField_ELBO`` the closed-form
Gaussian KL.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.vae import mlp

__all__ = ["Encoder", "VAEGuide"]


class Encoder(nn.Module):
    """x: (..., data_dim) -> (loc, scale), each (..., latent_dim)."""

    def __init__(self, data_dim: int, latent_dim: int, hidden_dim: int, num_hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(mlp([data_dim] + [hidden_dim] * num_hidden), nn.LeakyReLU(0.2))
        self.loc = nn.Linear(hidden_dim, latent_dim)
        self.log_var = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.loc(h), torch.exp(0.5 * self.log_var(h))


class VAEGuide(nn.Module):
    """q(z | x), callable with the model's signature ``(x, num_data)``; arguments as
    :class:`ppl_models.vae.VAEModel`."""

    def __init__(
        self, data_dim: int = 784, latent_dim: int = 200, hidden_dim: int = 400, num_hidden: int = 2
    ) -> None:
        super().__init__()
        self.encoder = Encoder(data_dim, latent_dim, hidden_dim, num_hidden)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> None:
        B = x.shape[0]
        size = B if num_data is None else num_data
        loc, scale = self.encoder(x)
        with pyro.plate("data", size, subsample=torch.arange(B, device=x.device), dim=-1):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
