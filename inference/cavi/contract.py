r"""Sums of products of tensors, contracted without temporaries (for :mod:`inference.cavi`).

Every expected log-density and message of :mod:`inference.cavi.families` is a list of *terms*
``(coefficient, operands)``: the quantity is the sum over terms of the coefficient times the
product of the operands, which broadcast against each other (shapes right-aligned). Here
such sums are reduced to the shape a sweep needs:

* :func:`contract`: each product by one ``torch.einsum`` straight to the output shape (a dim
  that no operand has but the sum runs over counts its size times);
* :class:`Bilinear`: when the output is (assignment, data) — the logits of an enumerated
  assignment, or the messages weighted by its q — every term splits into a factor over the
  assignment and one over the data, and all terms become ONE matrix product, the ``G @ W`` and
  ``r^T G`` of the hand-written sweep (:mod:`analytic.earthquake`), found from the terms.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Bilinear", "contract", "product", "reduce_to"]


def reduce_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``t`` summed over the dims where ``shape`` is 1 or absent: the total per element of a
    tensor of ``shape`` (leading dims beyond len(shape) are summed)."""
    if t.dim() > len(shape):
        t = t.sum(tuple(range(t.dim() - len(shape))))
    t = t.reshape((1,) * (len(shape) - t.dim()) + tuple(t.shape))
    full = torch.broadcast_shapes(t.shape, shape)
    return t.expand(full).sum_to_size(shape)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def product(operands, out: tuple, full: tuple, like: torch.Tensor) -> torch.Tensor:
    """The product of ``operands`` (tensors and numbers, broadcasting against ``full``) summed
    over the dims where ``out`` is 1: one ``torch.einsum``, each operand's size-1 dims left
    out of it; a dim no operand has counts ``full[d]`` times (shapes right-aligned)."""
    n = len(full)
    out = (1,) * (n - len(out)) + tuple(out)
    scalar, tensors, specs, present = 1.0, [], [], set()
    # one-element tensors are folded onto the smallest operand: einsum is slow with them
    ones = [o for o in operands if torch.is_tensor(o) and o.numel() == 1]
    operands = [o for o in operands if not (torch.is_tensor(o) and o.numel() == 1)]
    if ones:
        sized = [i for i, o in enumerate(operands) if torch.is_tensor(o)]
        folded = ones[0].reshape(())
        for o in ones[1:]:
            folded = folded * o.reshape(())
        if sized:
            i = min(sized, key=lambda j: operands[j].numel())
            operands[i] = operands[i] * folded
        else:
            operands.append(folded)
    for o in operands:
        if not torch.is_tensor(o):
            scalar = scalar * o
            continue
        shape = (1,) * (n - o.dim()) + tuple(o.shape)
        keep = [d for d in range(n) if shape[d] != 1]
        tensors.append(o.reshape([shape[d] for d in keep]))
        specs.append("".join(_LETTERS[d] for d in keep))
        present.update(keep)
    for d in range(n):
        if out[d] == 1 and d not in present:
            scalar = scalar * full[d]
    kept = [d for d in range(n) if out[d] != 1 and d in present]
    if tensors:
        spec = ",".join(specs) + "->" + "".join(_LETTERS[d] for d in kept)
        value = torch.einsum(spec, *tensors)
    else:
        value = torch.ones((), dtype=like.dtype, device=like.device)
    value = value.reshape([out[d] if d in kept else 1 for d in range(n)])
    return value * scalar if not (isinstance(scalar, float) and scalar == 1.0) else value


def contract(terms, out: tuple, full: tuple, like: torch.Tensor, extra=()) -> torch.Tensor:
    """sum over terms of coefficient * product(extra + operands), summed down to ``out``
    (see :func:`product`), the smaller results added first; broadcast to ``out``; in the
    dtype and device of ``like`` (the model's)."""
    pieces = [product((*extra, *ops), out, full, like) * coef for coef, ops in terms]
    pieces.sort(key=lambda p: -p.numel())
    total = pieces[0]
    small = None  # the smaller pieces, summed among themselves first, then added in place
    for p in pieces[1:]:
        small = p if small is None else small + p
    if small is not None:
        shape = torch.broadcast_shapes(total.shape, small.shape)
        total = total.add_(small) if total.shape == shape and total._base is None else total + small
    if total.dim() > len(out):
        total = total.reshape(total.shape[total.dim() - len(out) :])
    return total.expand(out)


def _dims(operands, n: int) -> set[int]:
    """The dims (of n, right-aligned) where some tensor operand has size > 1."""
    out = set()
    for o in operands:
        if torch.is_tensor(o):
            out.update(n - o.dim() + i for i, size in enumerate(o.shape) if size != 1)
    return out


class Bilinear:
    """Sum of terms over a layout (K, plates...) as ONE matrix product A @ B^T.

    A term whose operands split into those over the enumerated dim (and event dims: side A)
    and those over the plates (and event dims: side B) is the product of an A-side tensor
    (K, c) and a B-side tensor (N, c), c running over the event dims both sides share (the
    others are summed within their side). Their columns are concatenated over terms, the terms
    of one side alone summed into one column, so the (K, N) result is written once: the
    ``G @ W`` of the hand-written sweep (:func:`analytic.earthquake.updates.assign`), found from the
    terms. Terms with an operand over both get the einsum route (:func:`contract`). B-sides
    whose operands are all static (data, known parameters) are computed once and kept.
    """

    def __init__(self, like: torch.Tensor, static_ids: set[int]) -> None:
        self.like, self.static = like, static_ids
        self.cache: dict = {}

    def _split(self, key, coef, ops, full: tuple, a_dims: set, b_dims: set, kept: set,
               Nb: int):  # fmt: skip
        """One term as (A side over ``out_a``, B side (Nb, c), out_a, keep, da, db), or None
        if an operand spans both sides. ``kept``: the event dims the output keeps; the event
        dims both sides have are kept too (the c columns), the others summed within their side
        (a dim in neither counts its size once, on side A). A static B side is cached."""
        n = len(full)
        side_a, side_b = [], []
        for o in ops:
            dims = _dims([o], n)
            if dims & a_dims and dims & b_dims:
                return None
            (side_b if dims & b_dims else side_a).append(o)
        events = set(range(n)) - a_dims - b_dims
        da, db = _dims(side_a, n), _dims(side_b, n)
        keep = kept | (events & da & db)
        full_a = tuple(1 if d in b_dims or (d in events and d in db and d not in keep)
                       else full[d] for d in range(n))  # fmt: skip
        out_a = tuple(full[d] if d in a_dims or d in keep else 1 for d in range(n))
        full_b = tuple(1 if d in a_dims or (d in events and d not in db) else full[d]
                       for d in range(n))  # fmt: skip
        out_b = tuple(full[d] if d in b_dims or d in keep else 1 for d in range(n))
        pa = product(side_a, out_a, full_a, self.like) * coef
        static = all(id(o) in self.static for o in side_b if torch.is_tensor(o))
        pb = self.cache.get(key) if static else None
        if pb is None:
            pb = product(side_b, out_b, full_b, self.like).expand(out_b).reshape(Nb, -1)
            if static:
                self.cache[key] = pb
        return pa, pb, out_a, keep, da, db

    def __call__(self, groups, layout: tuple, enum_pos: int) -> torch.Tensor:
        """groups: (key, terms, full) per factor, each full ending in the factor's event dims
        after ``layout``; returns the sum over groups and terms, shape ``layout``."""
        A, B, rest, _ = self.columns(groups, layout, enum_pos)
        total = (A @ B.T).reshape(layout)
        for coef, ops, out, full in rest:
            total = total + contract([(coef, ops)], out, full, self.like).reshape(layout)
        return total

    def columns(self, groups, layout: tuple, enum_pos: int):
        """The sum of :meth:`__call__` as ``A @ B^T`` plus the terms that do not split:
        (A (K, C), B (Nb, C), rest: (coef, operands, out, full) per term, signature). The
        signature names every column's term, width and side, and whether its B side is static
        (data alone): two calls with the same signature have columns that mean the same."""
        K = layout[enum_pos]
        plates = {d for d in range(len(layout)) if d != enum_pos and layout[d] != 1}
        Nb = math.prod(layout[d] for d in plates)
        a_cols, b_cols, rest, signature = [], [], [], []
        a_only = torch.zeros((K, 1), dtype=self.like.dtype, device=self.like.device)
        for key, terms, full in groups:
            out = tuple(layout) + (1,) * (len(full) - len(layout))
            for i, (coef, ops) in enumerate(terms):
                split = self._split((key, i), coef, ops, full, {enum_pos}, plates, set(), Nb)
                if split is None:
                    rest.append((coef, ops, out, full))
                    signature.append(((key, i), "rest"))
                    continue
                pa, pb, out_a, keep, da, db = split
                static = (key, i) in self.cache
                if not keep and not db:
                    a_only = a_only + pa.reshape(-1, 1).expand(K, 1)
                    signature.append(((key, i), "a"))
                else:  # a B side alone (da empty) too: its A side, a scalar, on side A
                    a_cols.append(pa.expand(out_a).reshape(K, -1))
                    b_cols.append(pb)
                    signature.append(((key, i), pb.shape[1], static))
        a_cols.append(a_only)
        b_cols.append(torch.ones((Nb, 1), dtype=self.like.dtype, device=self.like.device))
        return torch.cat(a_cols, 1), self._joined(b_cols, signature), rest, tuple(signature)

    def _joined(self, b_cols: list, signature) -> torch.Tensor:
        """The B columns side by side. Kept when every one is static (data alone), and each
        term's kept B side then becomes a view of it (no second copy)."""
        static = all(isinstance(s[-1], str) or s[-1] is True for s in signature)
        key = ("joined", tuple(signature))
        if static and key in self.cache:
            return self.cache[key]
        joined = torch.cat(b_cols, 1)
        if static:
            self.cache[key] = joined
            start = 0
            for entry in signature:
                if len(entry) == 3:  # (term, width, static): a column block
                    self.cache[entry[0]] = joined[:, start : start + entry[1]]
                    start += entry[1]
        return joined

    def through(self, r: torch.Tensor, items, layout: tuple, enum_pos: int) -> list:
        """For each item (key, terms, out, full): sum over terms of coef * prod(ops) * r,
        summed down to ``out`` (a latent's elements, over the enumerated dim and event dims),
        the sums over the plates of every term of every item done as ONE product r @ B:
        the ``r^T G`` of the hand-written sweep."""
        K = layout[enum_pos]
        plates = {d for d in range(len(layout)) if d != enum_pos and layout[d] != 1}
        Nb = math.prod(layout[d] for d in plates)
        b_cols, pending, results, signature = [], [], [None] * len(items), []
        width = 0
        for j, (key, terms, out, full) in enumerate(items):
            n = len(full)
            outp = (1,) * (n - len(out)) + tuple(out)
            kept = {e for e in range(len(layout), n) if outp[e] != 1}
            for i, (coef, ops) in enumerate(terms):
                split = self._split((key, i), coef, ops, full, {enum_pos}, plates, kept, Nb)
                if split is None:
                    rp = r.reshape(r.shape + (1,) * (n - r.dim()))
                    value = contract([(coef, (rp, *ops))], tuple(out), full, self.like)
                    results[j] = value if results[j] is None else results[j] + value
                    continue
                pa, pb, out_a, _, _, _ = split
                b_cols.append(pb)
                signature.append(((key, i), pb.shape[1], (key, i) in self.cache))
                pending.append(
                    (j, pa.expand(out_a), out_a, outp, slice(width, width + pb.shape[1]))
                )
                width += pb.shape[1]
        if b_cols:
            M = r.reshape(K, Nb) @ self._joined(b_cols, signature)
            for j, pa, out_a, outp, cols in pending:
                value = (pa * M[:, cols].reshape(out_a)).sum_to_size(outp)
                value = value.reshape(items[j][2])
                results[j] = value if results[j] is None else results[j] + value
        return results
