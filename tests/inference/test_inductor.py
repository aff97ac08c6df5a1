"""The graph rewrites of inference/inductor.py: each exact (the same numbers, element by
element), each firing where it should and not where it would change a value or the random
stream. No C++ compile here: the graphs run as FX graphs (the compiled loss is tested in
test_compiled.py)."""

from __future__ import annotations

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from inference.jit.inductor import simplify

aten = torch.ops.aten


def _graph(fn, *inputs):
    return make_fx(fn, pre_dispatch=True, _error_on_data_dependent_ops=False)(*inputs)


def _count(graph, op) -> int:
    return sum(node.target is op for node in graph.graph.nodes)


def _poisson_like(rate, s):
    """Poisson(rate).log_prob(s) as torch.distributions writes it: s (N,) broadcast against
    enumerated rates (K, 1) before lgamma(s + 1); and the data indexed by a full plate."""
    s = s[torch.arange(s.shape[0])]
    value, rate = torch.broadcast_tensors(s, rate)
    return (value.xlogy(rate) - rate - (value + 1).lgamma()).sum()


def test_lgamma_runs_on_the_data_not_the_broadcast_and_the_value_is_unchanged():
    """After the rewrites lgamma and its + 1 run on the (N,) data, expanded afterwards; the
    full-range index is gone; the loss and its gradient are bit-for-bit the graph's before."""
    rate = torch.tensor([[0.7], [2.5], [4.0]], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.0, 3.0, 1.0, 7.0, 2.0], dtype=torch.float64)
    graph = _graph(_poisson_like, rate, s)
    before = graph(rate, s)
    (grad_before,) = torch.autograd.grad(before, rate)
    assert _count(graph, aten.index.Tensor) == 1
    simplify(graph)
    (lgamma,) = [n for n in graph.graph.nodes if n.target is aten.lgamma.default]
    assert tuple(lgamma.meta["val"].shape) == (5,)  # not (3, 5)
    assert _count(graph, aten.index.Tensor) == 0
    after = graph(rate, s)
    (grad_after,) = torch.autograd.grad(after, rate)
    assert after.item() == before.item() == _poisson_like(rate, s).item()
    assert torch.equal(grad_after, grad_before)


def test_a_partial_range_or_mixed_dtypes_are_left_alone():
    """x[arange(3)] of a length-4 x is not the identity, and a pointwise op of a float32 0-d
    tensor and a float64 tensor is not hoisted (type promotion would change with the number
    of dimensions): both graphs keep their ops and their values."""

    def fn(x, a, b):
        head = x[torch.arange(3)]
        mixed = torch.add(a.expand(3, 4), b.expand(3, 4))
        return head.sum() + mixed.sum()

    x = torch.arange(4.0, dtype=torch.float64)
    a = torch.tensor(0.1, dtype=torch.float32)
    b = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    graph = _graph(fn, x, a, b)
    before = graph(x, a, b)
    simplify(graph)
    assert _count(graph, aten.index.Tensor) == 1
    (add,) = [n for n in graph.graph.nodes if n.target is aten.add.Tensor and
              tuple(n.meta["val"].shape) == (3, 4)]  # fmt: skip
    assert graph(x, a, b).item() == before.item() == fn(x, a, b).item()


def test_unused_random_draws_are_kept_so_the_stream_matches_the_eager_one():
    """A draw whose result is unused still advances the generator in eager code; the
    simplified graph must draw it too, or every later draw would differ."""

    def fn(x):
        torch.randn(7, dtype=x.dtype)  # unused
        return (x * torch.randn(3, dtype=x.dtype)).sum()

    x = torch.ones(3, dtype=torch.float64)
    graph = _graph(fn, x)
    simplify(graph)
    torch.manual_seed(0)
    eager = fn(x).item(), torch.randn(1).item()
    torch.manual_seed(0)
    assert (graph(x).item(), torch.randn(1).item()) == eager
