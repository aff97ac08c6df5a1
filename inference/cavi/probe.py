"""Probing a model's latents: the codes each latent is set to, band by band over its family's
support (:func:`make_codes`), and the decoding of a parameter slot back to the latent's
elements, which :mod:`inference.cavi.analysis` uses to prove a conjugate use:

* :func:`decode`: the slot is the latent itself, element by element (through a link);
* :func:`decode_scaled`: the slot is ``c * v[index]``, c known (an exposure, ``k0 * tau``);
* :func:`decode_affine`: the slot changes by ``c * (change of v[index])`` (one latent's part
  in ``offset + sum of c_j v_j[index_j]``);
* :func:`dense_part`: the slot changes by ``A @ (change of v)`` (``X @ w``), A recovered from
  unit probes and verified on every band.

Each returns None unless the relation holds, to rounding, in every run.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "NUM_BANDS",
    "agree",
    "link_inverse",
    "decode",
    "decode_affine",
    "decode_scaled",
    "dense_part",
    "make_codes",
    "minimal",
]


def _spread(n: int, low: float, high: float, gen: torch.Generator, like: torch.Tensor):
    """n distinct numbers spread over [low, high], one in each of n equal strata (so that any
    two are at least (high - low) / (5 n) apart), in random order."""
    perm = torch.randperm(n, generator=gen).to(like.dtype)
    jitter = 0.3 + 0.4 * torch.rand(n, generator=gen, dtype=like.dtype)
    return low + (high - low) * (perm + jitter) / n


NUM_BANDS = 5  # probe runs per latent: its codes visit every band of its support in turn


def make_codes(family: str, like: torch.Tensor, band: int, gen: torch.Generator) -> torch.Tensor:
    """Probe values for a latent of ``family`` shaped like ``like``, in band ``band`` (of
    ``NUM_BANDS``) of its support: distinct numbers, stratified within the band. Over the
    bands every element visits the whole support, its extremes included, so that a function
    that is the identity on part of it (abs, relu, clamp, max, a permutation of components,
    an offset, a scale) fails to decode in some run:

    - Normal, MultivariateNormal: magnitudes from 1e-2 to 1e2, one fifth of the decades per
      band; random signs, flipped from one band to the next;
    - Gamma, InverseGamma: from 1e-3 to 1e3, a fifth of the decades per band;
    - Beta: logits from -6 to 6 (0.0025 to 0.9975), a fifth per band;
    - Dirichlet: rows of distinct weights from 20 to 1000, column ``band mod D`` scaled by 1e-2
      (so every column takes values near 0 and near 1), normalised;
    - Wishart: symmetric positive definite matrices Q diag(e) Q^T, Q a random rotation, the
      eigenvalues e from 1e-2 to 1e2, a fifth of the decades per band.
    """
    shape, name = like.shape, family
    n = shape.numel()

    def in_band(low: float, high: float) -> torch.Tensor:
        width = (high - low) / NUM_BANDS
        return _spread(n, low + band * width, low + (band + 1) * width, gen, like)

    if name == "Wishart":  # symmetric positive definite: Q diag(e) Q^T, e spread in the band
        D = shape[-1]
        rows = n // (D * D)
        e = torch.exp(in_band(math.log(1e-2), math.log(1e2))).reshape(-1)[: rows * D]
        e = e.reshape(rows, D)
        Q, _ = torch.linalg.qr(torch.randn(rows, D, D, generator=gen, dtype=like.dtype))
        codes = (Q * e.unsqueeze(-2)) @ Q.transpose(-1, -2)
        codes = 0.5 * (codes + codes.transpose(-1, -2))
    elif name == "Dirichlet":
        D = shape[-1]
        weights = torch.exp(_spread(n, math.log(20.0), math.log(1000.0), gen, like))
        weights = weights.reshape(-1, D)
        weights[:, band % D] *= 1e-2
        codes = weights / weights.sum(-1, keepdim=True)
    elif name == "Beta":
        codes = torch.sigmoid(in_band(-6.0, 6.0))
    elif name in ("Gamma", "InverseGamma"):
        codes = torch.exp(in_band(math.log(1e-3), math.log(1e3)))
    else:  # Normal, MultivariateNormal: the whole real line, both signs
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(like.dtype)
        codes = sign * (-1.0) ** band * torch.exp(in_band(math.log(1e-2), math.log(1e2)))
    return codes.reshape(shape).to(like.device)


def _tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of a decoded value: 64 ulps of the dtype (1.4e-14 in float64, 7.6e-6
    in float32), room for the few roundings of a link such as ``precision ** -0.5`` and its
    inverse, far below the relative spacing of the codes."""
    return 64 * torch.finfo(dtype).eps


def _decode_scalar(values: torch.Tensor, codes: torch.Tensor) -> torch.Tensor | None:
    """Flat index of the code each value equals (to :func:`_tolerance` relative), or None if
    any does not."""
    flat = codes.reshape(-1)
    order = torch.argsort(flat)
    ordered = flat[order]
    v = values.reshape(-1).contiguous().to(flat.dtype)
    pos = torch.searchsorted(ordered, v).clamp(1, ordered.numel() - 1)
    left, right = ordered[pos - 1], ordered[pos]
    pos = torch.where((v - left).abs() <= (right - v).abs(), pos - 1, pos)
    if ordered.numel() == 1:
        pos = torch.zeros_like(pos)
    tol = _tolerance(torch.promote_types(values.dtype, codes.dtype) if values.is_floating_point()
                     else codes.dtype)  # fmt: skip
    ok = (ordered[pos] - v).abs() <= tol * ordered[pos].abs()
    if not bool(ok.all()):
        return None
    return order[pos].reshape(values.shape)


def link_inverse(values: torch.Tensor, link: str) -> torch.Tensor:
    """The latent's value behind a slot value: a Normal's scale is precision^-1/2 (link
    ``"precision"``) or variance^1/2 (``"variance"``); otherwise the slot holds it."""
    if link == "precision":
        return values.pow(-2)
    if link == "variance":
        return values.square()
    return values


def decode(values, codes, family: str, vector: bool, link: str) -> torch.Tensor | None:
    """The element (scalar families) or row (vector families: the last dim) of the latent whose
    probe values are ``codes`` behind each element or row of a slot's ``values``, read through
    the pair's ``link``; None if the slot is not that latent, elementwise, in this run."""
    x = link_inverse(values, link)
    if family == "Wishart":  # each slot matrix must be one latent matrix, entry for entry
        D = codes.shape[-1]
        if x.shape[-2:] != (D, D):
            return None
        mats = codes.reshape(-1, D, D)
        idx = _decode_scalar(x[..., 0, 0], mats[:, 0, 0])
        if idx is None or not torch.allclose(
            mats[idx], x.to(mats.dtype), rtol=_tolerance(x.dtype), atol=0.0
        ):
            return None
        return idx
    if family == "Dirichlet":
        D = codes.shape[-1]
        if x.shape[-1] != D:
            return None
        rows = codes.reshape(-1, D)
        idx = _decode_scalar(x[..., 0], rows[:, 0])
        if idx is None or not torch.allclose(
            rows[idx], x.to(rows.dtype), rtol=_tolerance(x.dtype), atol=0.0
        ):
            return None
        return idx
    idx = _decode_scalar(x, codes)
    if idx is None or not vector:
        return idx
    D = codes.shape[-1]  # MultivariateNormal: each slot row must be one latent row, in order
    if x.shape[-1] != D:
        return None
    row, col = idx // D, idx % D
    position = torch.arange(D, device=idx.device)
    if not (bool((col == position).all()) and bool((row == row[..., :1]).all())):
        return None
    return row[..., 0]


def minimal(t: torch.Tensor, event_dims: int = 0) -> torch.Tensor:
    """``t`` with every dim along which it is constant kept at size 1 (but its rightmost
    ``event_dims``): an index map or a known parameter without its broadcast copies, so that
    the sweeps never compute on them."""
    for d in range(t.dim() - event_dims):  # a broadcast copy (stride 0) first: no comparison
        if t.shape[d] > 1 and t.stride(d) == 0:
            t = t.narrow(d, 0, 1)
    for d in range(t.dim() - event_dims):
        if t.shape[d] > 1 and bool((t == t.narrow(d, 0, 1)).all()):
            t = t.narrow(d, 0, 1)
    return t.contiguous()


def _nearest(values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index into ``table`` (1-d) of the entry nearest each of ``values`` (any shape)."""
    order = torch.argsort(table)
    ordered = table[order]
    v = values.reshape(-1).contiguous()
    pos = torch.searchsorted(ordered, v).clamp(1, max(ordered.numel() - 1, 1))
    if ordered.numel() == 1:
        return torch.zeros(values.shape, dtype=torch.long)
    left, right = ordered[pos - 1], ordered[pos]
    pos = torch.where((v - left).abs() <= (right - v).abs(), pos - 1, pos)
    return order[pos].reshape(values.shape)


def agree(got: torch.Tensor, want: torch.Tensor, size: torch.Tensor) -> bool:
    """``got == want`` to 64 ulps of the dtype relative to ``size`` (the magnitude of the
    quantities they were computed from), elementwise."""
    tol = _tolerance(got.dtype) * size
    return bool(((got - want).abs() <= tol).all())


def decode_scaled(xs: list, codes: list):
    """``(index, coef)`` such that ``xs[k] = coef * codes[k].flatten()[index]`` in every run k
    (coef known: the same in every run, nonzero), or None. ``xs``: the slot's values (through
    the link) per run, one shape; ``codes``: the latent's codes per run. The element is found
    from the ratio of two runs, in which the unknown coef cancels."""
    flat = [c.reshape(-1) for c in codes]
    x0, x1 = xs[0], xs[1]
    if bool((x0 == 0).any()):
        return None
    index = _nearest(x1 / x0, flat[1] / flat[0])
    coef = x0 / flat[0][index]
    for x, c in zip(xs, flat):
        want = coef * c[index]
        if not agree(x, want, x.abs() + want.abs()):
            return None
    return index, coef


def decode_affine(xs: list, codes: list):
    """``(index, coef)`` such that ``xs[k] - xs[0] = coef * (codes[k] - codes[0])[index]`` in
    every run k >= 1 (coef known, zero where the slot does not move): one latent's part in an
    affine slot, all else held. The element is found from the ratio of two runs' changes."""
    flat = [c.reshape(-1) for c in codes]
    deltas = [x - xs[0] for x in xs[1:]]
    steps = [c - flat[0] for c in flat[1:]]
    if len(deltas) < 2:
        return None
    still = torch.stack([(d == 0) for d in deltas]).all(0)
    ratio = torch.where(still, torch.ones_like(deltas[0]), deltas[0]) / torch.where(
        still, torch.ones_like(deltas[1]), deltas[1]
    )
    index = torch.where(still, 0, _nearest(ratio, steps[0] / steps[1]))
    coef = torch.where(still, torch.zeros_like(deltas[0]), deltas[0] / steps[0][index])
    for x, c in zip(xs[1:], flat[1:]):
        want = xs[0] + coef * (c - flat[0])[index]
        size = x.abs() + xs[0].abs() + (coef * c[index]).abs() + (coef * flat[0][index]).abs()
        if not agree(x, want, size):
            return None
    return index, coef


def dense_part(x_zero: torch.Tensor, x_units: list, xs: list, codes: list):
    """The matrix A (slot shape + (L,)) such that the slot is ``x_zero + A @ v`` for the
    latent's L elements v, all else held: column i from the run with v = e_i (``x_units[i]``),
    then verified on every band's run (``xs[k]`` with v = ``codes[k]``) to 64 ulps times the
    size of the sum, L terms of which it adds; None if any run disagrees."""
    A = torch.stack([x - x_zero for x in x_units], -1)
    for x, c in zip(xs, codes):
        v = c.reshape(-1).to(A.dtype)
        want = x_zero + A @ v
        size = (x_zero.abs() + A.abs() @ v.abs()) * (1 + v.numel() / 64)
        if not agree(x, want, size):
            return None
    return A
