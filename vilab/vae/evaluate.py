r"""Evaluating a VAE: per-image negative ELBO and the importance-weighted bound.

With q(z | x) = N(mu(x), diag sigma(x)^2) (:class:`guides.vae.VAEGuide`) and
p(x, z) = N(z | 0, I) Bernoulli(x | logits = g(z)) (:class:`ppl_models.vae.VAEModel`):

- negative ELBO per image (Kingma & Welling 2014, Eq. 10; loss = -ELBO)::

      -ELBO(x) = -log p(x | z) + KL(q(z | x) || N(0, I)),   z = mu + sigma eps, one eps

  with the closed-form Gaussian KL of :func:`analytic.gaussian.kl_diag_normal_std_normal`;
- importance-weighted bound with k samples (Burda, Grosse & Salakhutdinov 2016, Eq. 8)::

      L_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i | x),   z_i ~ q(z | x)

  E[L_k] <= log p(x), E[L_1] = ELBO and E[L_k] increases with k (Burda et al., Theorem 1),
  so L_100 is the usual estimate of the test log-likelihood.

Bernoulli log-densities use the logits directly (``binary_cross_entropy_with_logits``), exact
for all logits, with no log(theta + 1e-8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from analytic.gaussian import kl_diag_normal_std_normal

__all__ = ["bernoulli_log_lik", "importance_weighted_bound", "log_weights", "negative_elbo"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def bernoulli_log_lik(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_d log Bernoulli(x_d | logits_d), over the last dimension; shapes broadcast."""
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def _std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * z.square() - _HALF_LOG_2PI).sum(-1)


@torch.no_grad()
def log_weights(model, guide, x: torch.Tensor, num_samples: int, generator=None) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i | x) for z_i ~ q(z | x), i = 1..k.

    Args:
        model: :class:`ppl_models.vae.VAEModel`. guide: :class:`guides.vae.VAEGuide`.
        x: (B, D) binary images. num_samples: k >= 1. generator: for the eps draws.

    Returns:
        (k, B) log importance weights.
    """
    loc, scale = guide.encoder(x)
    eps = torch.randn((num_samples, *loc.shape), generator=generator, dtype=loc.dtype,
                      device=loc.device)  # fmt: skip
    z = loc + scale * eps
    log_q = (-0.5 * eps.square() - _HALF_LOG_2PI).sum(-1) - torch.log(scale).sum(-1)
    return bernoulli_log_lik(model.decoder(z), x) + _std_normal_log_prob(z) - log_q


@torch.no_grad()
def negative_elbo(model, guide, x: torch.Tensor, generator=None, chunk: int = 1000) -> torch.Tensor:
    """(B,) -ELBO per image: one-sample reconstruction term + closed-form KL (nats), computed
    over chunks of ``chunk`` images to bound memory."""
    out = []
    for start in range(0, x.shape[0], chunk):
        batch = x[start : start + chunk]
        loc, scale = guide.encoder(batch)
        eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        log_lik = bernoulli_log_lik(model.decoder(loc + scale * eps), batch)
        out.append(-log_lik + kl_diag_normal_std_normal(loc, scale))
    return torch.cat(out)


@torch.no_grad()
def importance_weighted_bound(
    model, guide, x: torch.Tensor, num_samples: int, generator=None, chunk: int | None = None
) -> torch.Tensor:
    """(B,) L_k per image (nats), computed over chunks of images to bound memory.

    Args:
        num_samples: k >= 1. chunk: images per chunk (default: about 10^4 / k).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    chunk = chunk or max(1, 10_000 // num_samples)
    out = []
    for start in range(0, x.shape[0], chunk):
        lw = log_weights(model, guide, x[start : start + chunk], num_samples, generator)
        out.append(torch.logsumexp(lw, 0) - math.log(num_samples))
    return torch.cat(out)
