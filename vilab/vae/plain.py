r"""The source's plain-PyTorch VAE objective and epoch: the baseline Pyro is compared with.

Assignment 1B of KTH DD2434 (R. Darous's solution 2023, annex 5.1) trains with Adam on, per
minibatch (summed over images)::

    loss = BCE(x, sigmoid(g(z))) + KL(N(mu, sigma^2) || N(0, I)),   z = mu + sigma eps

We write the same objective with logits (``binary_cross_entropy_with_logits``: the same value
wherever the source's is finite, and stable everywhere) and the closed-form KL of
:mod:`analytic.gaussian`. ``TraceMeanField_ELBO`` on :class:`ppl_models.vae.VAEModel` /
:class:`guides.vae.VAEGuide` computes this exact loss (tests check it to 1e-6 given the same eps).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from analytic.gaussian import kl_diag_normal_std_normal

__all__ = ["plain_epoch", "source_loss"]


def source_loss(model, guide, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The source's loss summed over the batch (nats; = -ELBO estimate), 0-dim.

    Args:
        model, guide: the VAE's decoder and encoder holders. x: (B, D) binary images.
        eps: (B, L) standard-normal noise for z = mu + sigma eps.
    """
    loc, scale = guide.encoder(x)
    logits = model.decoder(loc + scale * eps)
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    return reconstruction + kl_diag_normal_std_normal(loc, scale).sum()


def plain_epoch(
    model, guide, optimizer, images: torch.Tensor, batch_size: int, generator
) -> tuple[float, float]:
    """One epoch of the plain loop (shuffled minibatches); returns (loss per image, seconds)."""
    start = time.perf_counter()
    perm = torch.randperm(images.shape[0], generator=generator)
    total = 0.0
    for b in range(0, images.shape[0], batch_size):
        x = images[perm[b : b + batch_size]]
        eps = torch.randn(
            x.shape[0], guide.encoder.loc.out_features, dtype=x.dtype, device=x.device
        )
        optimizer.zero_grad(set_to_none=True)
        loss = source_loss(model, guide, x, eps)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / images.shape[0], time.perf_counter() - start
