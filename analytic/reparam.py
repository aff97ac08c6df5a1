r"""Reparameterised samplers: inverse-CDF exponential, Gumbel-max and Gumbel-softmax.

A reparameterised sampler writes z = T(eps, params) with eps from a fixed distribution, so
that gradients of E[f(z)] flow to the parameters through T (Kingma & Welling 2014, "Auto-
Encoding Variational Bayes", Sec. 2.4; sources: Exercise Sheet 02 of "Machine Learning for
Graphs and Sequential Data", Problem 2, and Assignment 1B of KTH DD2434, Sec. 4).

- Exponential, inverse CDF: F(z) = 1 - exp(-rate z), so z = -log(1 - u)/rate with
  u ~ U[0, 1) (``-log1p(-u)``: finite because u < 1); dz/d rate = -z/rate.
- Gumbel-max (Gumbel 1954; Maddison, Tarlow & Minka 2014): with g_k = -log(-log u_k)
  i.i.d. Gumbel(0, 1), argmax_k (logits_k + g_k) ~ Categorical(softmax(logits)). Exact, but
  not differentiable.
- Gumbel-softmax / Concrete (Jang, Gu & Poole 2017, Eq. 1; Maddison, Mnih & Teh 2017):
  y = softmax((logits + g)/temperature), a point on the simplex that tends to the one-hot
  Gumbel-max sample as temperature -> 0. argmax y is exactly Categorical at every
  temperature. ``hard=True`` returns the one-hot argmax in the forward pass with the
  gradient of y ("straight-through", Jang et al. Sec. 2.2): y_hard - y.detach() + y.

Randomness: every sampler takes ``seed`` (a fresh ``torch.Generator`` on the parameters'
device) or ``generator``, not both; with neither it uses torch's global generator. Pure
torch; never imports Pyro.
"""

from __future__ import annotations

import torch

__all__ = [
    "exponential_rsample",
    "gumbel_max_sample",
    "gumbel_sample",
    "gumbel_softmax_rsample",
]

# Categorical probabilities must sum to 1 within this (absolute) tolerance.
_PROBS_ATOL = 1e-6


def _generator(seed: int | None, generator: torch.Generator | None, device) -> torch.Generator:
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        return torch.Generator(device=device).manual_seed(seed)
    return generator


def _shape(sample_shape) -> torch.Size:
    shape = torch.Size(sample_shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"sample_shape must have sizes >= 0, got {tuple(shape)}")
    return shape


def exponential_rsample(
    rate: torch.Tensor,
    sample_shape=(),
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""z = -log(1 - u) / rate, u ~ U[0, 1): Expo(rate) samples with a pathwise gradient.

    Seeds/002 Problem 2b (the inverse CDF of Expo(rate)).

    Args:
        rate: (...) rates, finite and > 0; may require grad.
        sample_shape: leading sample dimensions S.

    Returns:
        (*S, ...) samples >= 0, differentiable in ``rate`` (dz/d rate = -z/rate).

    Raises:
        ValueError: a rate that is not finite and > 0.
    """
    if not bool((torch.isfinite(rate) & (rate > 0)).all()):
        bad = rate[~(torch.isfinite(rate) & (rate > 0))].flatten()[0].item()
        raise ValueError(f"rate must be finite and > 0, got {bad!r}")
    gen = _generator(seed, generator, rate.device)
    u = torch.rand(
        _shape(sample_shape) + rate.shape, generator=gen, dtype=rate.dtype, device=rate.device
    )
    return -torch.log1p(-u) / rate


def gumbel_sample(
    shape,
    *,
    dtype: torch.dtype | None = None,
    device=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Standard Gumbel(0, 1) noise g = -log(-log u), u ~ U(0, 1), by inverse CDF.

    u is clamped to [tiny, 1) so that g is always finite (torch.rand can return exactly 0).

    Returns:
        Tensor of ``shape``.
    """
    gen = _generator(seed, generator, device)
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(_shape(shape), generator=gen, dtype=dtype, device=device)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(dtype).tiny)))


def _logits(logits: torch.Tensor | None, probs: torch.Tensor | None) -> torch.Tensor:
    """Validated, normalised logits (..., K) from exactly one of logits or probs."""
    if (logits is None) == (probs is None):
        raise ValueError("give exactly one of logits or probs")
    if probs is not None:
        if probs.dim() < 1 or probs.shape[-1] < 1:
            raise ValueError(
                f"probs must have shape (..., K) with K >= 1, got {tuple(probs.shape)}"
            )
        if not bool((torch.isfinite(probs) & (probs >= 0)).all()):
            raise ValueError("probs must be finite and >= 0")
        total = probs.sum(-1).flatten()
        worst = total[(total - 1).abs().argmax()].item()
        if abs(worst - 1) > _PROBS_ATOL:
            raise ValueError(
                f"probs must sum to 1 over the last dimension (tolerance {_PROBS_ATOL}), "
                f"but a row sums to {worst!r}"
            )
        return torch.log(probs)
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., K) with K >= 1, got {tuple(logits.shape)}")
    if bool(torch.isnan(logits).any()) or bool((logits == float("inf")).any()):
        raise ValueError("logits must not be NaN or +inf")
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def _perturbed_logits(logits, probs, sample_shape, seed, generator) -> torch.Tensor:
    """(*S, ..., K) normalised logits plus i.i.d. Gumbel(0, 1) noise."""
    log_p = _logits(logits, probs)
    g = gumbel_sample(
        _shape(sample_shape) + log_p.shape,
        dtype=log_p.dtype,
        device=log_p.device,
        seed=seed,
        generator=generator,
    )
    return log_p + g


def gumbel_max_sample(
    logits: torch.Tensor | None = None,
    probs: torch.Tensor | None = None,
    sample_shape=(),
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Categorical samples argmax_k (logits_k + g_k), g_k i.i.d. Gumbel(0, 1).

    Args:
        logits: (..., K) unnormalised log-probabilities (-inf allowed), or
        probs: (..., K) probabilities summing to 1 over the last dimension.
        sample_shape: leading sample dimensions S.

    Returns:
        (*S, ...) int64 category indices in [0, K).
    """
    return torch.argmax(_perturbed_logits(logits, probs, sample_shape, seed, generator), dim=-1)


def gumbel_softmax_rsample(
    logits: torch.Tensor | None = None,
    probs: torch.Tensor | None = None,
    temperature: float | torch.Tensor = 1.0,
    sample_shape=(),
    *,
    hard: bool = False,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Relaxed one-hot samples y = softmax((logits + g) / temperature) (Jang et al. 2017, Eq. 1).

    Args:
        logits: (..., K) unnormalised log-probabilities, or probs: (..., K) summing to 1.
        temperature: > 0 (a number or a tensor broadcastable to (..., 1)). As it -> 0 the
            samples tend to one-hot; as it grows they tend to the centre (1/K, ..., 1/K).
        sample_shape: leading sample dimensions S.
        hard: return the one-hot argmax in the forward pass and the relaxed sample's gradient
            in the backward pass (straight-through).

    Returns:
        (*S, ..., K) points on the simplex, differentiable in logits/probs and temperature.

    Raises:
        ValueError: temperature not > 0, probs not summing to 1, both or neither of
            logits/probs, seed and generator both given.
    """
    temperature = torch.as_tensor(temperature)
    if not bool((torch.isfinite(temperature) & (temperature > 0)).all()):
        raise ValueError(f"temperature must be finite and > 0, got {temperature.min().item()!r}")
    perturbed = _perturbed_logits(logits, probs, sample_shape, seed, generator)
    y = torch.softmax(perturbed / temperature.to(perturbed), dim=-1)
    if not hard:
        return y
    y_hard = torch.zeros_like(y).scatter_(-1, y.argmax(-1, keepdim=True), 1.0)
    return y_hard - y.detach() + y
