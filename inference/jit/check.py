"""The equality check a compiled loss must pass before it is used: its value and gradient
against the eager estimator's, from the same random state, to sqrt(eps) of the dtype (1.5e-8 in
float64, 3.5e-4 in float32) relative to the largest magnitude involved.
"""

from __future__ import annotations

import math

import torch

__all__ = ["mismatch", "step_mismatch"]


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


def step_mismatch(value: float, loss: torch.Tensor, before, after, state, num_params: int) -> str:
    """'' if a compiled SVI step agrees with the eager one taken from the same ``before``
    state: the loss to sqrt(eps) relative (as :func:`mismatch`); each parameter's *update*
    (``state - before`` against ``after - before``) and each Adam state tensor to sqrt(eps) of
    the largest magnitude of the eager one. Else what differs and by how much."""
    tol = math.sqrt(torch.finfo(loss.dtype).eps)
    if not abs(loss.item() - value) <= tol * max(1.0, abs(value)):
        return f"loss {loss.item()!r} against {value!r}"
    for i, (b, a, t) in enumerate(zip(before, after, state)):
        expected, got = (a - b, t - b) if i < num_params else (a, t)
        if not expected.is_floating_point():
            expected, got = expected.double(), got.double()
        scale = max(_max_abs([expected]), torch.finfo(expected.dtype).tiny)
        off = (expected - got).abs().max().item() if expected.numel() else 0.0
        if not off <= tol * scale:
            what = "update of parameter" if i < num_params else "Adam state tensor"
            return f"{what} {i % max(num_params, 1)} off by {off:.3g} (scale {scale:.3g})"
    return ""
