r"""The state of q and the coordinate updates of automatic CAVI (see :mod:`inference.cavi`).

:class:`Sweeper` holds, for one analysed model (:func:`inference.cavi.analysis.analyse`), the
parameters of every continuous latent's q and their expected statistics, and the
q-probabilities of every enumerated assignment, and performs the updates of variational
message passing (Winn & Bishop 2005, §3-4): q(latent) from its prior's accumulator plus its
children's messages, q(Z) as the softmax of the weighted expected log-densities that depend on
Z, and the exact ELBO.

A slot that is not one latent itself (:class:`inference.cavi.analysis.Slot`) has statistics
built from its terms' (Winn & Bishop 2005, §4; Bishop 2006, PRML §10.3 for the linear
regression): a known multiple ``c v`` of a Gamma latent has E = c E v, E log = log c + E log v;
a Normal's affine loc ``b + sum_j c_j v_j[i_j] + sum_k A_k w_k`` has mean
``b + sum_j c_j E v_j + sum_k A_k E w_k`` and second moment mean^2 + sum_j c_j^2 Var v_j +
sum_k diag(A_k Cov w_k A_k^T) (the terms independent under q). The message to one term is the
slot's message with the value replaced by the value minus the other terms' mean, scaled by
c^2 (precision) and c (precision times mean) -- for a dense term, A^T diag(.) A and A^T (.).
"""

from __future__ import annotations

import dataclasses

import torch

from inference.cavi.analysis import Assignment, Factor, Latent, ModelStructure, Slot, Term
from inference.cavi.contract import Bilinear, contract, reduce_to

__all__ = ["Sweeper"]


def _gather(stats: dict, latent: Latent, index: torch.Tensor) -> dict:
    """The latent's expected statistics at the elements (rows: vectors, matrices) ``index``."""
    r = latent.family.row_dims
    if r:
        rows = latent.shape.numel() // latent.shape[-r:].numel()
        return {
            k: v.reshape((rows,) + v.shape[len(latent.shape) - r :])[index]
            for k, v in stats.items()
        }
    return {k: v.reshape(-1)[index] for k, v in stats.items()}


def _cast(tree, dtype: torch.dtype):
    """``tree`` (a dataclass, named tuple, dict, list or tuple of them) with every floating
    tensor in ``dtype``; a tensor already in it, and anything else, is kept as it is."""
    if torch.is_tensor(tree):
        return tree.to(dtype) if tree.is_floating_point() else tree
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        fields = {f.name: _cast(getattr(tree, f.name), dtype)
                  for f in dataclasses.fields(tree) if f.init}  # fmt: skip
        return dataclasses.replace(tree, **fields)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_cast(v, dtype) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cast(v, dtype) for v in tree)
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    return tree


class Sweeper:
    """The state of q and the updates, for one analysed model."""

    def __init__(self, s: ModelStructure, like: torch.Tensor) -> None:
        s = _cast(s, like.dtype)  # float32 constants of a float64 model: one dtype throughout
        self.s = s
        self.like = like  # the model's dtype and device
        self.params: dict[str, dict] = {}
        self.stats: dict[str, dict] = {}
        self.probs: dict[str, torch.Tensor] = {}
        self.neg_entropy: dict[str, torch.Tensor] = {}
        static = set()  # the tensors that never change: data statistics, known parameters
        for f in s.factors:
            for stats in [f.value_stats or {}] + [sl.const or {} for sl in f.slots.values()]:
                static.update(id(v) for v in stats.values())
            static.update(id(v) for v in f.consts.values())
            static.update(id(v) for v in (f.const_elp, f.weight) if torch.is_tensor(v))
        self.bilinear = Bilinear(like, static)
        self._composite: dict = {}  # slot id -> (its parents' statistics ids, its statistics)
        self._gram: dict = {}  # id of a dense term's matrix -> A^T A
        self.single = next(iter(s.assignments.values())) if len(s.assignments) == 1 else None
        self.children: dict[str, list[tuple[Factor, str, Term]]] = {n: [] for n in s.latents}
        self.prior: dict[str, Factor] = {}
        for f in s.factors:
            if f.value_latent is not None:
                self.prior[f.value_latent] = f
            for slot_name, slot in f.slots.items():
                for term in slot.terms:
                    self.children[term.parent].append((f, slot_name, term))

    # ---- q of continuous latents
    def set_params(self, name: str, params: dict) -> None:
        self.params[name] = params
        self.stats[name] = self.s.latents[name].family.stats(params)

    def _slot_stats(self, f: Factor) -> dict:
        out = {}
        for slot_name, slot in f.slots.items():
            if slot.const is not None:
                out[slot_name] = slot.const
            elif slot.plain is not None:
                t = slot.plain
                out[slot_name] = _gather(self.stats[t.parent], self.s.latents[t.parent], t.index)
            else:
                out[slot_name] = self._composite_stats(slot)
        return out

    def _term_moments(self, t: Term) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of one term of a Normal's affine loc, per slot element."""
        stats = self.stats[t.parent]
        if t.matrix is not None:
            m = stats["mean"]
            cov = stats["outer"] - m.unsqueeze(-1) * m.unsqueeze(-2)
            A = t.matrix  # diag(A Cov A^T) by einsum: 3x the mult-and-sum, no (N, L) product
            return A @ m, torch.einsum("...i,...i->...", A @ cov, A)
        g = _gather(stats, self.s.latents[t.parent], t.index)
        return t.coef * g["mean"], t.coef.square() * (g["sq"] - g["mean"].square())

    def _composite_stats(self, slot: Slot) -> dict:
        """The statistics of a slot that is a known multiple of a Gamma latent, or a Normal's
        affine loc (see the module's docstring); kept until one of its latents' q changes."""
        key = tuple(id(self.stats[t.parent]) for t in slot.terms)
        kept = self._composite.get(id(slot))
        if kept is not None and kept[0] == key:
            return kept[1]
        value = self._compute_composite(slot)
        self._composite[id(slot)] = (key, value)
        return value

    def _compute_composite(self, slot: Slot) -> dict:
        if not slot.rule.affine:
            (t,) = slot.terms
            g = _gather(self.stats[t.parent], self.s.latents[t.parent], t.index)
            return {"mean": t.coef * g["mean"], "log": torch.log(t.coef) + g["log"]}
        mean, var = 0.0, 0.0
        for t in slot.terms:
            m, v = self._term_moments(t)
            mean, var = mean + m, var + v
        if slot.offset is not None:
            mean = mean + slot.offset
        return {"mean": mean, "sq": mean.square() + var}

    def _value_stats(self, f: Factor) -> dict:
        return self.stats[f.value_latent] if f.value_latent is not None else f.value_stats

    def _weights(self, f: Factor, skip: str | None = None) -> list:
        """The factor's weight and its assignments' q-probabilities, as operands."""
        out = [f.weight] + [self.probs[a] for a in f.assignments if a != skip]
        return [w for w in out if torch.is_tensor(w) or w != 1.0]

    def elp(self, f: Factor) -> torch.Tensor:
        """E_q[log f] per element of the factor's layout (enumerated dims included)."""
        if f.const_elp is not None:
            return f.const_elp
        terms = f.family.elp(self._value_stats(f), self._slot_stats(f), f.consts)
        out = tuple(f.layout) + (1,) * f.event_ndim
        return contract(terms, out, tuple(f.base_shape), self.like).reshape(f.layout)

    def update_latent(self, name: str) -> None:
        """q(latent) <- its family with accumulator = prior message + children's messages."""
        self.set_accumulator(name, self.accumulate(name))

    def set_accumulator(self, name: str, acc: list) -> None:
        """q(latent) <- its family with the accumulator ``acc`` (:meth:`accumulate`'s layout)."""
        latent = self.s.latents[name]
        family = latent.family
        r = family.row_dims
        D = latent.shape[-1] if r else 1
        batch = tuple(latent.shape[: len(latent.shape) - r])
        shaped = tuple(a.reshape(batch + (D,) * e) for a, e in zip(acc, family.component_dims))
        self.set_params(name, family.params(shaped))

    def accumulate(self, name: str, factors: set | None = None) -> list:
        """The accumulator of latent ``name``'s q (:mod:`inference.cavi.families`): its prior's
        message plus its children's, over the factors named in ``factors`` (None: all); one
        tensor per component, shape (rows,) + (D,) * component dims (rows: the latent's
        elements, or rows of a vector family). Messages are sums over a factor's elements, so
        the accumulators of disjoint sets of factors add up to the whole one."""
        latent = self.s.latents[name]
        family = latent.family
        r = family.row_dims
        D = latent.shape[-1] if r else 1
        rows = latent.shape.numel() // D**r
        batch = tuple(latent.shape[: len(latent.shape) - r])  # one accumulator row each
        f = self.prior[name]
        acc = []
        if factors is None or f.name in factors:
            parts = f.family.value_message(self._slot_stats(f), f.consts)
            # a Normal prior of a vector in a full-covariance q: its precisions on the diagonal
            diagonal = family.name == "MultivariateNormal" and f.family_name == "Normal"
            for terms, dims in zip(parts, family.component_dims):
                target = batch + (D,) * (min(dims, 1) if diagonal else dims)
                w = f.weight
                if torch.is_tensor(w):
                    w = w.reshape(w.shape + (1,) * (len(target) - w.dim()))
                value = contract(terms, target, target, self.like, [w])
                if diagonal and dims == 2:
                    value = torch.diag_embed(value)
                acc.append(value.reshape((rows,) + (D,) * dims).to(self.like.dtype).clone())
        else:
            acc = [
                torch.zeros((rows,) + (D,) * dims, dtype=self.like.dtype, device=self.like.device)
                for dims in family.component_dims
            ]
        batched = []  # messages weighted by the one assignment's q alone: one r @ B for all
        a = self.single
        for child, slot_name, term in self.children[name]:
            if factors is not None and child.name not in factors:
                continue
            slot = child.slots[slot_name]
            value_stats, slot_stats = self._value_stats(child), self._slot_stats(child)
            if slot.rule.affine and slot.plain is None:  # the value less the other terms
                if len(slot.terms) == 1:
                    rest = slot.offset
                else:
                    rest = slot_stats[slot_name]["mean"] - self._term_moments(term)[0]
                if rest is not None:
                    value_stats = {**value_stats, "mean": value_stats["mean"] - rest}
            if slot.rule.one_hot:
                weights = self._weights(child)
                self._one_hot_message(acc[0], child, weights, term.index, value_stats["index"])
                continue
            parts = slot.rule.message(value_stats, slot_stats, child.consts)
            if term.coef is not None:  # a known factor c: each component times c^power
                parts = [
                    [(coef, (*ops, term.coef.pow(power))) for coef, ops in terms] if power
                    else terms for terms, power in zip(parts, family.scaling)
                ]  # fmt: skip
            weights = self._weights(child)
            if term.matrix is not None:
                self._dense_message(acc, child, parts, weights, term.matrix)
                continue
            if (a is not None and not r and child.assignments == (a.name,)
                    and tuple(child.layout) == tuple(a.layout)
                    and not torch.is_tensor(child.weight)):  # fmt: skip
                for i, terms in enumerate(parts):
                    terms = [(coef * child.weight, ops) for coef, ops in terms]
                    batched.append(((child.name, slot_name, term.parent, i), terms,
                                    tuple(term.index.shape), tuple(child.base_shape), i,
                                    term.index))  # fmt: skip
                continue
            for i, (terms, dims) in enumerate(zip(parts, family.component_dims)):
                trailing = (D,) * dims
                pad = (1,) * (child.event_ndim + len(trailing))
                w = [x.reshape(x.shape + pad) if torch.is_tensor(x) else x for x in weights]
                out = tuple(term.index.shape) + trailing
                total = contract(terms, out, tuple(child.base_shape) + trailing, self.like, w)
                acc[i].index_add_(0, term.index.reshape(-1), total.reshape((-1,) + trailing))
        if batched:
            items = [(key, terms, out, full) for key, terms, out, full, _, _ in batched]
            totals = self.bilinear.through(self.probs[a.name], items, tuple(a.layout),
                                           len(a.layout) + a.enum_dim)  # fmt: skip
            for (_, _, _, _, i, index), total in zip(batched, totals):
                acc[i].index_add_(0, index.reshape(-1), total.reshape(-1))
        return acc

    def _one_hot_message(self, acc, child: Factor, weights, rows, categories) -> None:
        """A Categorical's message to its Dirichlet rows: each element's weight (scale, mask,
        q of its assignments) added at (its row of the parent, its category), by one
        ``index_put_``: the sum over elements of w one_hot(category), without the one-hot
        rows (N x V for N words of a vocabulary of V)."""
        shape = tuple(child.base_shape)
        w = torch.ones((), dtype=self.like.dtype, device=self.like.device)
        pad = (1,) * child.event_ndim  # weights are per element of the layout, without them
        for x in weights:
            w = w * (x.reshape(x.shape + pad) if torch.is_tensor(x) else x)
        w = w.expand(shape) if w.dim() <= len(shape) else w.sum_to_size(shape)
        acc.index_put_(
            (rows.expand(shape).reshape(-1), categories.expand(shape).reshape(-1)),
            w.reshape(-1).to(acc.dtype),
            accumulate=True,
        )

    def _dense_message(self, acc: list, child: Factor, parts, weights, A: torch.Tensor) -> None:
        """A matrix term's message: the per-element precision p0 and precision-weighted
        residual p1 of the child, summed over its elements as A^T diag(p0) A and A^T p1."""
        pad = (1,) * child.event_ndim
        w = [x.reshape(x.shape + pad) if torch.is_tensor(x) else x for x in weights]
        out = tuple(A.shape[:-1])
        p0, p1 = (contract(terms, out, tuple(child.base_shape), self.like, w) for terms in parts)
        A2 = A.reshape(-1, A.shape[-1])
        if all(step == 0 for step in p0.stride()):  # one precision for all: A^T A, kept
            gram = self._gram.get(id(A))
            if gram is None:
                gram = self._gram[id(A)] = A2.T @ A2
            acc[0][0] += p0.reshape(-1)[0] * gram
        else:
            acc[0][0] += A2.T @ (p0.reshape(-1, 1) * A2)
        acc[1][0] += A2.T @ p1.reshape(-1)

    # ---- q of assignments
    def logits(self, a: Assignment) -> torch.Tensor:
        """:meth:`weighted_elps` of the model's one assignment, by one matrix product
        (:class:`Bilinear`); the generic route if a factor's layout is not a's."""
        groups = self._logit_groups(a)
        if groups is None:
            return self.weighted_elps({g.name: self.elp(g) for g in self.s.factors}, a)
        return self.bilinear(groups, tuple(a.layout), len(a.layout) + a.enum_dim)

    def logit_columns(self, a: Assignment):
        """:meth:`logits` as ``A @ B^T`` (:meth:`Bilinear.columns`): (A, B, signature), or
        None where some term does not split (or a factor's layout is not a's)."""
        groups = self._logit_groups(a)
        if groups is None:
            return None
        A, B, rest, signature = self.bilinear.columns(groups, tuple(a.layout),
                                                      len(a.layout) + a.enum_dim)  # fmt: skip
        return None if rest else (A, B, signature)

    def _logit_groups(self, a: Assignment):
        groups = []
        for f in self.s.factors:
            if a.name not in f.assignments:
                continue
            if tuple(f.layout) != tuple(a.layout):
                return None
            if f.const_elp is not None:
                terms, full = [(1.0, (f.const_elp,))], tuple(f.layout)
            else:
                terms = f.family.elp(self._value_stats(f), self._slot_stats(f), f.consts)
                full = tuple(f.base_shape)
            w = f.weight
            if torch.is_tensor(w):
                w = w.reshape(w.shape + (1,) * (len(full) - len(f.layout)))
                terms = [(coef, (w, *ops)) for coef, ops in terms]
            elif w != 1.0:
                terms = [(coef * w, ops) for coef, ops in terms]
            groups.append((f.name, terms, full))
        return groups

    def weighted_elps(self, elps: dict, a: Assignment) -> torch.Tensor:
        """sum over the factors that depend on a of w E log f, the other assignments averaged
        under their q, per element of a's layout (the unnormalised log q*(Z))."""
        total = None
        for f in self.s.factors:
            if a.name in f.assignments:
                term = elps[f.name]
                for w in self._weights(f, skip=a.name):
                    term = term * w
                term = reduce_to(term, a.layout)
                total = term.clone() if total is None else total + term
        return total  # a tensor of its own: update_assignment overwrites it

    def update_assignment(self, a: Assignment, logits: torch.Tensor) -> None:
        """q(Z) <- softmax over Z of ``logits`` (:meth:`weighted_elps` / scale), which it
        overwrites; keeps sum q log q = sum q (logits - top) - sum log sum exp(logits - top)
        for the ELBO (top: the largest logit of each element, so exp never overflows)."""
        dim = a.enum_dim
        logits = logits.sub_(logits.amax(dim=dim, keepdim=True))
        r = torch.exp(logits)
        total = r.sum(dim=dim, keepdim=True)
        r = r.div_(total)
        self.probs[a.name] = r
        neg_entropy = torch.dot(r.reshape(-1), logits.reshape(-1)) - torch.log(total).sum()
        self.neg_entropy[a.name] = a.scale * neg_entropy

    def elbo(self, elps: dict, only: Assignment | None = None, total=None,
             factors: set | None = None, latents: bool = True,
             assignments: bool = True) -> torch.Tensor:  # fmt: skip
        """The ELBO at the current q. With ``only`` (the model's one assignment) and ``total``
        (its :meth:`weighted_elps` at this q), the factors that depend on it contribute
        sum q(Z) total in one dot product. A part of it: the factors named in ``factors``
        (None: all), the entropies of the continuous latents if ``latents``, those of the
        assignments if ``assignments``."""
        value = 0.0
        for f in self.s.factors:
            if (only is not None and f.assignments) or (factors is not None
                                                         and f.name not in factors):  # fmt: skip
                continue
            term = elps[f.name]
            for w in self._weights(f):
                term = term * w
            value = value + term.expand(f.layout).sum()
        if only is not None:
            value = value + torch.dot(self.probs[only.name].reshape(-1), total.reshape(-1))
        if latents:
            for name, latent in self.s.latents.items():
                value = value + latent.family.distribution(self.params[name]).entropy().sum()
        if assignments:
            for name in self.s.assignments:
                value = value - self.neg_entropy[name]
        return value

    def result_params(self) -> dict:
        out = {n: dict(p) for n, p in self.params.items()}
        for name, a in self.s.assignments.items():
            r = self.probs[name].movedim(a.enum_dim, -1)
            K = r.shape[-1]
            r = r.reshape(tuple(a.batch_shape) + (K,))
            out[name] = {"probs": r[..., 1] if a.family == "Bernoulli" else r}
        return out
