r"""A traced loss compiled by TorchInductor: the ``backend="inductor"`` of
:class:`inference.jit.CompiledELBO`.

:func:`compile_loss` records the loss with ``make_fx`` (above autograd, ``pre_dispatch=True``,
so ``detach`` stays a stop-gradient), applies two exact rewrites that XLA makes and Inductor
does not (:func:`simplify`: indexing by the whole range is the identity, ``x[arange(n)] = x``;
a pointwise op commutes with broadcasting, ``f(expand(a, S), c) = expand(f(a, c), S)``), and
compiles the graph with ``torch.compile(fullgraph=True, dynamic=False)`` and Inductor's
``fallback_random=True``, so that it draws the same random numbers as the eager loss.

The graph freezes every Python value read from a tensor: the caller must have checked the trace
first (:class:`inference.jit.CompiledELBO` does). Values equal the eager loss's up to the order
of floating-point sums. Why each step, and the measured compile times and speed-ups:
``docs/guides/compiled-svi.md``.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable

import torch
import torch.fx

__all__ = ["compile_loss", "compile_step"]

aten = torch.ops.aten


def compile_loss(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> Callable:
    """``fn(*inputs)`` -> scalar loss, recorded with ``make_fx`` from the current random state,
    simplified (module doc, step 2) and wrapped by ``torch.compile`` with Inductor (compiled at
    its first call). ``inputs`` are the leaves the loss differentiates and the tensor arguments;
    every later call must pass tensors of the same shapes, dtypes and devices."""
    from torch.fx.experimental.proxy_tensor import make_fx

    with warnings.catch_warnings():  # the eager loss already ran and warned, from this code
        warnings.simplefilter("ignore")
        graph = make_fx(fn, pre_dispatch=True, _error_on_data_dependent_ops=False)(*inputs)
    simplify(graph)
    return torch.compile(graph, fullgraph=True, dynamic=False, options={"fallback_random": True})


def compile_step(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> Callable:
    """``fn(*inputs)`` -> loss, a whole SVI step that updates some of ``inputs`` in place
    (:mod:`inference.jit.step`), recorded with ``make_fx`` below autograd (the backward as
    plain ATen ops: the graph is not differentiated again), simplified (module doc, step 2) and
    compiled by Inductor's ``compile_fx`` as an inference graph, without TorchDynamo in front
    (no guards to evaluate per call: measured 0.42 against 0.64 ms per earthquake step through
    ``torch.compile``). Recording runs one step: the caller restores the state after. Every
    later call must pass tensors of the same shapes, dtypes and devices, under ``no_grad``."""
    from torch._guards import TracingContext, tracing
    from torch._inductor.compile_fx import compile_fx
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    # one fake mode, with a shape environment, for the whole compile: make_fx describes each
    # node's output with it (by default it builds a new fake mode per node: 25% of its time),
    # and Inductor's on-disk caches key on its shape environment (without one, compile_fx
    # bypasses them and every run compiles from scratch)
    fake = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    with tracing(TracingContext(fake)):
        with warnings.catch_warnings():  # the eager step already ran and warned, from this code
            warnings.simplefilter("ignore")
            graph = make_fx(fn, _error_on_data_dependent_ops=False)(*inputs)
        simplify(graph)
        with torch.no_grad():
            return compile_fx(graph, inputs, config_patches={"fallback_random": True})


def simplify(graph: torch.fx.GraphModule) -> None:
    """Drop the frozen scalar reads, then rewrite (module doc, step 2) until nothing changes."""
    for node in list(graph.graph.nodes):
        if node.target is aten._local_scalar_dense.default and not node.users:
            graph.graph.erase_node(node)
    _identity_index(graph.graph)
    while _hoist_pointwise(graph.graph):
        pass
    graph.graph.eliminate_dead_code(is_impure_node=_is_impure)
    graph.recompile()


def _is_impure(node: torch.fx.Node) -> bool:
    """Kept even when unused: FX's impure nodes, and random ops (dropping one would shift the
    generator's stream, so the next step would draw different numbers from the eager loss)."""
    if node.is_impure():
        return True
    target = node.target
    return isinstance(target, torch._ops.OpOverload) and (
        torch.Tag.nondeterministic_seeded in target.tags
    )


def _value(node):
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _is_full_range(index, length: int) -> bool:
    """``index`` is the graph node ``arange(length)`` (int64, from 0, step 1)."""
    return (
        isinstance(index, torch.fx.Node)
        and index.target is aten.arange.default
        and index.args == (length,)
        and index.kwargs.get("dtype") in (None, torch.int64)
    )


def _identity_index(graph: torch.fx.Graph) -> bool:
    """``x[arange(len(x))]`` -> ``x`` (a copy under autograd anyway: the graph is functional)."""
    changed = False
    for node in list(graph.nodes):
        if node.target is not aten.index.Tensor:
            continue
        x, indices = node.args
        if len(indices) == 1 and _is_full_range(indices[0], _value(x).shape[0]):
            node.replace_all_uses_with(x)
            graph.erase_node(node)
            changed = True
    return changed


def _broadcast_source(node: torch.fx.Node) -> torch.fx.Node | None:
    """The tensor that ``node`` broadcasts: ``a`` for ``expand(a, S)`` or for the i-th output
    of ``broadcast_tensors([..., a, ...])`` (how ``torch.distributions`` broadcasts); else None."""
    if node.target is aten.expand.default:
        return node.args[0]
    if node.target is operator.getitem:
        source, i = node.args
        if isinstance(source, torch.fx.Node) and source.target is aten.broadcast_tensors.default:
            return source.args[0][i]
    return None


def _hoist_pointwise(graph: torch.fx.Graph) -> bool:
    """``f(expand(a, S), expand(b, S), c)`` -> ``expand(f(a, b, c), S)`` for a pointwise ATen op
    ``f`` (Python-number arguments ``c`` allowed; either expansion may be an output of
    ``broadcast_tensors``) whenever broadcast(a, b) has fewer elements
    than S and the tensors share one dtype (so type promotion cannot change with their number of
    dimensions). Exact: each element of the result is ``f`` of the same numbers."""
    changed = False
    for node in list(graph.nodes):
        target = node.target
        if not isinstance(target, torch._ops.OpOverload) or node.kwargs:
            continue
        if torch.Tag.pointwise not in target.tags or _is_impure(node):
            continue
        out = _value(node)
        tensors = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if not isinstance(out, torch.Tensor) or not tensors:
            continue
        inner = {a: _broadcast_source(a) for a in tensors}
        if any(v is None or _value(a).shape != out.shape for a, v in inner.items()):
            continue
        if len({_value(a).dtype for a in inner.values()}) > 1:
            continue  # type promotion treats a 0-d tensor apart: the result dtype could change
        shape = torch.broadcast_shapes(*(_value(a).shape for a in inner.values()))
        if shape.numel() >= out.numel():
            continue
        args = tuple(inner.get(a, a) for a in node.args)
        with graph.inserting_before(node):
            small = graph.call_function(target, args)
            small.meta["val"] = out.new_empty(shape)  # same op and dtypes: same result dtype
            wide = graph.call_function(aten.expand.default, (small, list(out.shape)))
            wide.meta["val"] = out
        node.replace_all_uses_with(wide)
        graph.erase_node(node)
        changed = True
    return changed
