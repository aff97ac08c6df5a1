"""What replaying a traced loss needs: the *signature* a graph was traced for (model, guide, the
shapes, dtypes and devices of the tensor arguments, the values of the others), the leaves the
loss differentiates, which parameters exist, and the random state to start a run from.
"""

from __future__ import annotations

from typing import NamedTuple

import pyro
import torch

__all__ = [
    "Signature",
    "leaves",
    "parameter_ids",
    "rng_devices",
    "rng_state",
    "set_rng_state",
    "signature",
    "tensor_args",
    "with_tensors",
]


class Signature(NamedTuple):
    """What a compiled graph was traced for: model, guide and the argument structure."""

    model: int
    guide: int
    args: tuple
    kwargs: tuple


def _describe(value) -> object:
    """A hashable stand-in for one argument: tensors by (shape, dtype, device, requires_grad),
    anything else by its value (which must be hashable: a trace freezes it)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device, value.requires_grad)
    hash(value)  # TypeError for a list, dict, ...: the caller falls back to the eager loss
    return value


def signature(model, guide, args, kwargs) -> Signature:
    """The :class:`Signature` of a call; TypeError for an argument that cannot be hashed."""
    items = sorted(kwargs.items())
    return Signature(
        id(model),
        id(guide),
        tuple(_describe(a) for a in args),
        tuple((k, _describe(v)) for k, v in items),
    )


def leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors that require grad behind ``loss`` (its parameters), in graph order."""
    found, seen, stack = [], set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if variable is not None:
            found.append(variable)
        stack.extend(n for n, _ in node.next_functions)
    return found


def rng_devices(tensors) -> list:
    """The CUDA devices whose generators the call may draw from (those of its tensors)."""
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def parameter_ids(model, guide) -> tuple:
    """Which parameters exist: Pyro's param store and those of ``model`` and ``guide`` where
    they are modules (a change means the call just created some, as an autoguide's first)."""
    modules = [m for m in (model, guide) if isinstance(m, torch.nn.Module)]
    return (
        tuple(sorted(pyro.get_param_store().keys())),
        tuple(id(p) for m in modules for p in m.parameters()),
    )


def tensor_args(args, kwargs) -> list[torch.Tensor]:
    """The tensor arguments, positional first, then keyword ones by sorted name."""
    return [a for a in args if isinstance(a, torch.Tensor)] + [
        v for _, v in sorted(kwargs.items()) if isinstance(v, torch.Tensor)
    ]


def with_tensors(args, kwargs, tensors):
    """``args, kwargs`` with their tensors replaced, in :func:`tensor_args`'s order."""
    it = iter(tensors)
    new_args = tuple(next(it) if isinstance(a, torch.Tensor) else a for a in args)
    new_kwargs = dict(kwargs)
    for key, value in sorted(kwargs.items()):
        if isinstance(value, torch.Tensor):
            new_kwargs[key] = next(it)
    return new_args, new_kwargs


def rng_state(devices):
    """The CPU generator's state and those of ``devices``, to start a replay from."""
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def set_rng_state(devices, state) -> None:
    """Restore a state taken by :func:`rng_state`."""
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for d, s in zip(devices, cuda):
        torch.cuda.set_rng_state(s, d)
