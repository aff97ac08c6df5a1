r"""The Bernoulli VAE's generative model as a Pyro model (no inference code).

::

    z_n ~ N(0, I_L)                                     n in the minibatch (plate "data")
    x_n | z_n ~ prod_d Bernoulli(x_nd | logits = g(z_n)_d),   d = 1..784

g is the decoder MLP of the source (Assignment 1B of KTH DD2434, R. Darous's solution 2023,
annex 5.1): latent -> hidden -> ... -> hidden -> 784 with LeakyReLU(0.2) between layers. The
likelihood takes the decoder's *logits* (Bernoulli's log-density is then log_sigmoid-based and
exact; no log(theta + 1e-8)).

Minibatches: called with ``num_data`` = N (the size of the training set), the plate scales the
minibatch's log-density by N / B, so the loss is an unbiased estimate of the full-data -ELBO;
by default (``num_data=None``) the loss is that of the minibatch itself.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

__all__ = ["MAX_PLATE_NESTING", "Decoder", "VAEModel", "mlp"]

MAX_PLATE_NESTING = 1


def mlp(sizes: list[int], slope: float = 0.2) -> nn.Sequential:
    """Linear layers of the given sizes with LeakyReLU(slope) between them (not after the last)."""
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"layer sizes must be >= 1 and at least two, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """g: (..., latent_dim) -> (..., data_dim) Bernoulli logits."""

    def __init__(self, latent_dim: int, hidden_dim: int, num_hidden: int, data_dim: int) -> None:
        super().__init__()
        self.net = mlp([latent_dim] + [hidden_dim] * num_hidden + [data_dim])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VAEModel(nn.Module):
    """p(x, z) = N(z | 0, I) Bernoulli(x | logits = g(z)); callable as ``model(x, num_data)``.

    Args:
        data_dim: pixels per image (784). latent_dim: L (200 in the source).
        hidden_dim: width of the hidden layers (400). num_hidden: number of hidden layers (2).
    """

    def __init__(
        self, data_dim: int = 784, latent_dim: int = 200, hidden_dim: int = 400, num_hidden: int = 2
    ) -> None:
        super().__init__()
        for name, value in (("data_dim", data_dim), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim), ("num_hidden", num_hidden)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.decoder = Decoder(latent_dim, hidden_dim, num_hidden, data_dim)

    def prior(self, batch_size: int, like: torch.Tensor) -> dist.TorchDistribution:
        """N(0, I_L), batch (batch_size,), event (L,)."""
        zeros = like.new_zeros(batch_size, self.latent_dim)
        return dist.Normal(zeros, 1.0).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """x: (B, data_dim) binary images (any float dtype). num_data: N for minibatch scaling."""
        B = x.shape[0]
        size = B if num_data is None else num_data
        with pyro.plate("data", size, subsample=torch.arange(B, device=x.device), dim=-1):
            z = pyro.sample("z", self.prior(B, x))
            logits = self.decoder(z)
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)
