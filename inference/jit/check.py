"""The equality check a compiled loss must pass before it is used: its value and gradient
against the eager estimator's, from the same random state, to sqrt(eps) of the dtype (1.5e-8 in
float64, 3.5e-4 in float32) relative to the largest magnitude involved.
"""

from __future__ import annotations

import math

import torch

__all__ = ["mismatch"]


def _max_abs(tensors) -> float:
    return max((t.abs().max().item() for t in tensors if t is not None and t.numel()), default=0)


def mismatch(eager: torch.Tensor, compiled: torch.Tensor, leaves) -> str:
    """'' if the two losses and their gradients agree to sqrt(eps) of the dtype, relative to
    the largest magnitude involved; else what differs and by how much."""
    tol = math.sqrt(torch.finfo(eager.dtype).eps)
    grads_e = torch.autograd.grad(eager, leaves, retain_graph=True, allow_unused=True)
    grads_c = torch.autograd.grad(compiled, leaves, retain_graph=True, allow_unused=True)
    diff = abs(eager.item() - compiled.item())
    if not diff <= tol * max(1.0, abs(eager.item())):
        return f"loss {compiled.item()!r} against {eager.item()!r}"
    scale = max(1.0, _max_abs(grads_e))
    for ge, gc in zip(grads_e, grads_c):
        if (ge is None) != (gc is None):
            return "a parameter's gradient is missing from one of them"
        if ge is not None and not (ge - gc).abs().max().item() <= tol * scale:
            return f"gradient off by {(ge - gc).abs().max().item():.3g} (scale {scale:.3g})"
    return ""
