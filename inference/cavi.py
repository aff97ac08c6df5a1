r"""Automatic CAVI: closed-form mean-field updates derived from a conjugate Pyro model.

``auto_cavi(model, *args, **kwargs)`` traces the model once (:func:`inference.conjugacy.analyse`:
each latent's family, and for every site which latent fills which parameter, through which
index), then runs coordinate ascent with the exact updates of variational message passing
(Winn & Bishop 2005, JMLR 6, §3-4; Hoffman, Blei, Wang & Paisley 2013, JMLR 14, §2.2 and eq. 15;
Bishop 2006, PRML eq. 10.9):

* an enumerated discrete latent Z (Categorical or Bernoulli, assignment of a mixture):
  ``log q*(Z = k) = sum_f w_f E_q[log f | Z = k] + const`` over the factors f that depend on Z,
  the other assignments averaged under their own q; normalised over k (softmax);
* a continuous latent in a conjugate family: its natural parameters are its prior's plus, for
  every site that uses it, the expected sufficient statistics that site sends
  (:mod:`inference.cavi_families`), weighted by the site's scale, mask and the q-probabilities
  of the assignments it depends on.

One sweep updates the discrete latents first, then the continuous ones in the order the model
samples them (the order of :func:`analytic.earthquake.cavi_step`). After each sweep the exact
ELBO is computed with every constant kept::

    ELBO = sum_f sum_elements w_f prod_a q(Z_a) E_q[log f] + sum_latents H[q]

(loss = -ELBO). Every update maximises the ELBO over its block, so ``elbo_history`` never
decreases (up to rounding). Everything is vectorised tensor algebra over the trace's tensors:
no Python loop over data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch

from inference.conjugacy import Assignment, Factor, Latent, ModelStructure, analyse

__all__ = ["AutoCaviGuide", "AutoCaviResult", "auto_cavi"]


@dataclass(frozen=True)
class AutoCaviResult:
    """Result of :func:`auto_cavi`.

    Attributes:
        guide: :class:`AutoCaviGuide`, the mean-field q as a Pyro guide.
        elbo: the ELBO after the last sweep (0-dim tensor; loss = -elbo).
        elbo_history: the ELBO after every sweep, shape (num_steps,).
        params: site name -> that family's parameters by torch.distributions names (Normal:
            loc, scale; MultivariateNormal: loc, covariance_matrix; Gamma: concentration, rate;
            Beta: concentration1, concentration0; Dirichlet: concentration; an enumerated
            Categorical or Bernoulli: probs, shape batch_shape + (K,) or batch_shape).
        num_steps: sweeps run. converged: whether the last sweep gained at most tol * |ELBO|.
        analysis_seconds: time to trace and analyse the model (once); sweep_seconds: time of
            the sweeps and their ELBOs (wall clock, ``time.perf_counter``).
    """

    guide: AutoCaviGuide
    elbo: torch.Tensor
    elbo_history: torch.Tensor
    params: dict
    num_steps: int
    converged: bool
    analysis_seconds: float = 0.0
    sweep_seconds: float = 0.0


class AutoCaviGuide:
    """The mean-field q of :func:`auto_cavi` as a Pyro guide: every latent sampled from its q
    inside the model's plates (same names, sizes and dims), so ``Predictive``, Pyro's ELBOs
    and the diagnostics of :mod:`inference.diagnostics` run on it."""

    def __init__(self, structure: ModelStructure, params: dict) -> None:
        self._structure = structure
        self.params = params

    def distribution(self, name: str) -> dist.TorchDistribution:
        """q of site ``name`` as a Pyro distribution with the site's batch and event shape."""
        s = self._structure
        if name in s.assignments:
            a = s.assignments[name]
            if a.family == "Bernoulli":
                return dist.Bernoulli(probs=self.params[name]["probs"])
            return dist.Categorical(probs=self.params[name]["probs"])
        latent = s.latents[name]
        q = getattr(dist, latent.family.name)(**self.params[name])
        extra = latent.event_dim - (1 if latent.family.vector else 0)
        return q.to_event(extra) if extra else q

    def __call__(self, *args, **kwargs) -> dict:
        s = self._structure
        out = {}
        sites = [(n, la.frames) for n, la in s.latents.items()]
        sites += [(n, a.frames) for n, a in s.assignments.items()]
        plates = {}  # one plate object per name, re-entered by every site in it
        for _, frames in sites:
            for f in frames:
                if f.name not in plates:
                    plates[f.name] = pyro.plate(f.name, f.size, dim=f.dim)
        for name, frames in sites:
            with ExitStack() as stack:
                for f in frames:
                    stack.enter_context(plates[f.name])
                out[name] = pyro.sample(name, self.distribution(name))
        return out


# --------------------------------------------------------------------------------------------
# Tensor helpers
# --------------------------------------------------------------------------------------------


def _reduce_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``t`` summed over the dims where ``shape`` is 1 or absent: the total per element of a
    tensor of ``shape`` (leading dims beyond len(shape) are summed)."""
    if t.dim() > len(shape):
        t = t.sum(tuple(range(t.dim() - len(shape))))
    t = t.reshape((1,) * (len(shape) - t.dim()) + tuple(t.shape))
    full = torch.broadcast_shapes(t.shape, shape)
    return t.expand(full).sum_to_size(shape)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _product(operands, out: tuple, full: tuple, like: torch.Tensor) -> torch.Tensor:
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


def _contract(terms, out: tuple, full: tuple, like: torch.Tensor, extra=()) -> torch.Tensor:
    """sum over terms of coefficient * product(extra + operands), summed down to ``out``
    (see :func:`_product`), the smaller results added first; broadcast to ``out``; in the
    dtype and device of ``like`` (the model's)."""
    pieces = [_product((*extra, *ops), out, full, like) * coef for coef, ops in terms]
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


class _Bilinear:
    """Sum of terms over a layout (K, plates...) as ONE matrix product A @ B^T.

    A term whose operands split into those over the enumerated dim (and event dims: side A)
    and those over the plates (and event dims: side B) is the product of an A-side tensor
    (K, c) and a B-side tensor (N, c), c running over the event dims both sides share (the
    others are summed within their side). Their columns are concatenated over terms, the terms
    of one side alone summed into one column, so the (K, N) result is written once: the
    ``G @ W`` of the hand-written sweep (:func:`analytic.earthquake._assign`), found from the
    terms. Terms with an operand over both get the einsum route (:func:`_contract`). B-sides
    whose operands are all static (data, known parameters) are computed once and kept.
    """

    def __init__(self, like: torch.Tensor, static_ids: set[int]) -> None:
        self.like, self.static = like, static_ids
        self.cache: dict = {}

    def __call__(self, groups, layout: tuple, enum_pos: int) -> torch.Tensor:
        """groups: (key, terms, full) per factor, each full ending in the factor's event dims
        after ``layout``; returns the sum over groups and terms, shape ``layout``."""
        K = layout[enum_pos]
        plates = [d for d in range(len(layout)) if d != enum_pos and layout[d] != 1]
        Nb = math.prod(layout[d] for d in plates)
        a_cols, b_cols, rest = [], [], []
        a_only = torch.zeros((K, 1), dtype=self.like.dtype, device=self.like.device)
        b_only = torch.zeros((Nb, 1), dtype=self.like.dtype, device=self.like.device)
        for key, terms, full in groups:
            n = len(full)  # full = layout + the factor's event dims
            out = tuple(layout) + (1,) * (n - len(layout))
            a_dims, b_dims = {enum_pos}, set(plates)
            c_dims = {d for d in range(n) if out[d] == 1}
            for i, (coef, ops) in enumerate(terms):
                side_a, side_b = [], []
                for o in ops:
                    dims = _dims([o], n)
                    if dims & a_dims and dims & b_dims:
                        side_a = None
                        break
                    (side_b if dims & b_dims else side_a).append(o)
                if side_a is None:
                    rest.append((coef, ops, out, full))
                    continue
                da, db = _dims(side_a, n), _dims(side_b, n)
                shared = c_dims & da & db
                full_a = tuple(1 if d in b_dims or (d in c_dims and d in db and d not in shared)
                               else full[d] for d in range(n))  # fmt: skip
                out_a = tuple(full[d] if d in a_dims or d in shared else 1 for d in range(n))
                full_b = tuple(1 if d in a_dims or (d in c_dims and d not in db) else full[d]
                               for d in range(n))  # fmt: skip
                out_b = tuple(full[d] if d in b_dims or d in shared else 1 for d in range(n))
                pa = _product(side_a, out_a, full_a, self.like) * coef
                cache_key = (key, i)
                static = all(id(o) in self.static for o in side_b if torch.is_tensor(o))
                pb = self.cache.get(cache_key) if static else None
                if pb is None:
                    pb = _product(side_b, out_b, full_b, self.like).expand(out_b).reshape(Nb, -1)
                    if static:
                        self.cache[cache_key] = pb
                if not shared and not db:
                    a_only = a_only + pa.reshape(-1, 1).expand(K, 1)
                elif not shared and not da:
                    b_only = b_only + pb * pa.reshape(())
                else:
                    a_cols.append(pa.expand(out_a).reshape(K, -1))
                    b_cols.append(pb)
        a_cols += [a_only, torch.ones_like(a_only)]
        b_cols += [torch.ones_like(b_only), b_only]
        total = (torch.cat(a_cols, 1) @ torch.cat(b_cols, 1).T).reshape(layout)
        for coef, ops, out, full in rest:
            total = total + _contract([(coef, ops)], out, full, self.like).reshape(layout)
        return total

    def through(self, r: torch.Tensor, items, layout: tuple, enum_pos: int) -> list:
        """For each item (key, terms, out, full): sum over terms of coef * prod(ops) * r,
        summed down to ``out`` (a latent's elements, over the enumerated dim and event dims),
        the sums over the plates of every term of every item done as ONE product r @ B:
        the ``r^T G`` of the hand-written sweep."""
        K = layout[enum_pos]
        plates = [d for d in range(len(layout)) if d != enum_pos and layout[d] != 1]
        Nb = math.prod(layout[d] for d in plates)
        b_cols, pending, results = [], [], [None] * len(items)
        width = 0
        for j, (key, terms, out, full) in enumerate(items):
            n = len(full)
            outp = (1,) * (n - len(out)) + tuple(out)
            a_dims, b_dims = {enum_pos}, set(plates)
            events = set(range(len(layout), n))
            for i, (coef, ops) in enumerate(terms):
                side_a, side_b = [], []
                for o in ops:
                    dims = _dims([o], n)
                    if dims & a_dims and dims & b_dims:
                        side_a = None
                        break
                    (side_b if dims & b_dims else side_a).append(o)
                if side_a is None:
                    rp = r.reshape(r.shape + (1,) * (n - r.dim()))
                    value = _contract([(coef, (rp, *ops))], tuple(out), full, self.like)
                    results[j] = value if results[j] is None else results[j] + value
                    continue
                da, db = _dims(side_a, n), _dims(side_b, n)
                keep = {e for e in events if outp[e] != 1} | (events & da & db)
                full_a = tuple(1 if d in b_dims or (d in events and d in db and d not in keep)
                               else full[d] for d in range(n))  # fmt: skip
                out_a = tuple(full[d] if d in a_dims or d in keep else 1 for d in range(n))
                full_b = tuple(1 if d in a_dims or (d in events and d not in db) else full[d]
                               for d in range(n))  # fmt: skip
                out_b = tuple(full[d] if d in b_dims or d in keep else 1 for d in range(n))
                pa = (_product(side_a, out_a, full_a, self.like) * coef).expand(out_a)
                cache_key = (key, i)
                static = all(id(o) in self.static for o in side_b if torch.is_tensor(o))
                pb = self.cache.get(cache_key) if static else None
                if pb is None:
                    pb = _product(side_b, out_b, full_b, self.like).expand(out_b).reshape(Nb, -1)
                    if static:
                        self.cache[cache_key] = pb
                b_cols.append(pb)
                pending.append((j, pa, out_a, outp, slice(width, width + pb.shape[1])))
                width += pb.shape[1]
        if b_cols:
            M = r.reshape(K, Nb) @ torch.cat(b_cols, 1)
            for j, pa, out_a, outp, cols in pending:
                value = (pa * M[:, cols].reshape(out_a)).sum_to_size(outp)
                value = value.reshape(items[j][2])
                results[j] = value if results[j] is None else results[j] + value
        return results


def _gather(stats: dict, latent: Latent, index: torch.Tensor) -> dict:
    """The latent's expected statistics at the elements (rows) ``index``, in its shape."""
    if latent.family.vector:
        D = latent.shape[-1]
        rows = latent.shape.numel() // D
        return {
            k: v.reshape((rows,) + v.shape[len(latent.shape) - 1 :])[index]
            for k, v in stats.items()
        }
    return {k: v.reshape(-1)[index] for k, v in stats.items()}


class _Sweeper:
    """The state of q and the updates, for one analysed model."""

    def __init__(self, s: ModelStructure, like: torch.Tensor) -> None:
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
        self.bilinear = _Bilinear(like, static)
        self.single = next(iter(s.assignments.values())) if len(s.assignments) == 1 else None
        self.children: dict[str, list[tuple[Factor, str]]] = {n: [] for n in s.latents}
        self.prior: dict[str, Factor] = {}
        for f in s.factors:
            if f.value_latent is not None:
                self.prior[f.value_latent] = f
            for slot_name, slot in f.slots.items():
                if slot.parent is not None:
                    self.children[slot.parent].append((f, slot_name))

    # ---- q of continuous latents
    def set_params(self, name: str, params: dict) -> None:
        self.params[name] = params
        self.stats[name] = self.s.latents[name].family.stats(params)

    def _slot_stats(self, f: Factor) -> dict:
        out = {}
        for slot_name, slot in f.slots.items():
            if slot.parent is None:
                out[slot_name] = slot.const
            else:
                parent = self.s.latents[slot.parent]
                out[slot_name] = _gather(self.stats[slot.parent], parent, slot.index)
        return out

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
        return _contract(terms, out, tuple(f.base_shape), self.like).reshape(f.layout)

    def update_latent(self, name: str) -> None:
        """q(latent) <- its family with accumulator = prior message + children's messages."""
        latent = self.s.latents[name]
        family = latent.family
        D = latent.shape[-1] if family.vector else 1
        rows = latent.shape.numel() // D
        vec = 1 if family.vector else 0
        f = self.prior[name]
        parts = f.family.value_message(self._slot_stats(f), f.consts)
        acc = []
        for terms, extra in zip(parts, family.extra):
            target = tuple(latent.shape) + (D,) * extra
            w = f.weight
            if torch.is_tensor(w):
                w = w.reshape(w.shape + (1,) * (latent.event_dim + extra))
            value = _contract(terms, target, target, self.like, [w])
            acc.append(value.reshape((rows,) + (D,) * (vec + extra)).clone())
        batched = []  # messages weighted by the one assignment's q alone: one r @ B for all
        a = self.single
        for child, slot_name in self.children[name]:
            slot = child.slots[slot_name]
            parts = slot.rule.message(self._value_stats(child), self._slot_stats(child),
                                      child.consts)  # fmt: skip
            weights = self._weights(child)
            if (a is not None and not vec and child.assignments == (a.name,)
                    and tuple(child.layout) == tuple(a.layout)
                    and not torch.is_tensor(child.weight)):  # fmt: skip
                for i, terms in enumerate(parts):
                    terms = [(coef * child.weight, ops) for coef, ops in terms]
                    batched.append(((child.name, slot_name, i), terms, tuple(slot.index.shape),
                                    tuple(child.base_shape), i, slot.index))  # fmt: skip
                continue
            for i, (terms, extra) in enumerate(zip(parts, family.extra)):
                trailing = (D,) * (vec + extra)
                pad = (1,) * (child.event_ndim + len(trailing))
                w = [x.reshape(x.shape + pad) if torch.is_tensor(x) else x for x in weights]
                out = tuple(slot.index.shape) + trailing
                total = _contract(terms, out, tuple(child.base_shape) + trailing, self.like, w)
                acc[i].index_add_(0, slot.index.reshape(-1), total.reshape((-1,) + trailing))
        if batched:
            items = [(key, terms, out, full) for key, terms, out, full, _, _ in batched]
            totals = self.bilinear.through(self.probs[a.name], items, tuple(a.layout),
                                           len(a.layout) + a.enum_dim)  # fmt: skip
            for (_, _, _, _, i, index), total in zip(batched, totals):
                acc[i].index_add_(0, index.reshape(-1), total.reshape(-1))
        shaped = tuple(a.reshape(latent.shape + (D,) * e) for a, e in zip(acc, family.extra))
        self.set_params(name, family.params(shaped))

    # ---- q of assignments
    def logits(self, a: Assignment) -> torch.Tensor:
        """:meth:`weighted_elps` of the model's one assignment, by one matrix product
        (:class:`_Bilinear`); the generic route if a factor's layout is not a's."""
        groups = []
        for f in self.s.factors:
            if a.name not in f.assignments:
                continue
            if tuple(f.layout) != tuple(a.layout):
                return self.weighted_elps({g.name: self.elp(g) for g in self.s.factors}, a)
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
        return self.bilinear(groups, tuple(a.layout), len(a.layout) + a.enum_dim)

    def weighted_elps(self, elps: dict, a: Assignment) -> torch.Tensor:
        """sum over the factors that depend on a of w E log f, the other assignments averaged
        under their q, per element of a's layout (the unnormalised log q*(Z))."""
        total = None
        for f in self.s.factors:
            if a.name in f.assignments:
                term = elps[f.name]
                for w in self._weights(f, skip=a.name):
                    term = term * w
                term = _reduce_to(term, a.layout)
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

    def elbo(self, elps: dict, only: Assignment | None = None, total=None) -> torch.Tensor:
        """The ELBO at the current q. With ``only`` (the model's one assignment) and ``total``
        (its :meth:`weighted_elps` at this q), the factors that depend on it contribute
        sum q(Z) total in one dot product."""
        value = 0.0
        for f in self.s.factors:
            if only is not None and f.assignments:
                continue
            term = elps[f.name]
            for w in self._weights(f):
                term = term * w
            value = value + term.expand(f.layout).sum()
        if only is not None:
            value = value + torch.dot(self.probs[only.name].reshape(-1), total.reshape(-1))
        for name, latent in self.s.latents.items():
            value = value + latent.family.distribution(self.params[name]).entropy().sum()
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


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def _check_settings(model, num_steps, tol, seed, init) -> None:
    if not callable(model):
        raise ValueError(f"model must be a callable Pyro model, got {type(model).__name__}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < math.inf:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if init is not None and not isinstance(init, dict):
        raise ValueError(f"init must be a dict site name -> parameters, got {type(init).__name__}")


def _default_params(latent: Latent) -> dict:
    """A start around the seeded prior draw d: Normal(d, 1), MultivariateNormal(d, I),
    Gamma with mean d and shape 1, Beta and Dirichlet with mean d and total concentration 2
    (resp. D)."""
    d = latent.draw
    name = latent.family.name
    if name == "Normal":
        return {"loc": d.clone(), "scale": torch.ones_like(d)}
    if name == "MultivariateNormal":
        eye = torch.eye(d.shape[-1], dtype=d.dtype, device=d.device)
        return {"loc": d.clone(), "covariance_matrix": eye.expand(d.shape + d.shape[-1:]).clone()}
    if name == "Gamma":
        return {"concentration": torch.ones_like(d), "rate": 1.0 / d}
    if name == "Beta":
        return {"concentration1": 2.0 * d, "concentration0": 2.0 * (1.0 - d)}
    return {"concentration": d * d.shape[-1]}


def _checked_init(latent: Latent, given) -> dict:
    """The user's start for one latent, as tensors of the site's shape and dtype, or a
    ValueError naming the site and the parameter."""
    names = latent.family.param_names
    if not isinstance(given, dict) or set(given) != set(names):
        raise ValueError(
            f"init[{latent.name!r}] must be a dict with exactly the keys {list(names)} "
            f"({latent.family.name}), got {given!r:.200}"
        )
    d = latent.draw
    out = {}
    for key in names:
        try:
            value = torch.as_tensor(given[key], dtype=d.dtype, device=d.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be numbers: {err}") from None
        want = d.shape + (d.shape[-1:] if key == "covariance_matrix" else ())
        try:
            value = value.expand(want).clone()
        except RuntimeError:
            raise ValueError(
                f"init[{latent.name!r}][{key!r}] must broadcast to shape {tuple(want)}, got "
                f"{tuple(value.shape)}"
            ) from None
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be finite")
        if key != "loc" and key != "covariance_matrix" and not bool((value > 0).all()):
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be > 0, got {value.min()}")
        out[key] = value
    if "covariance_matrix" in out:
        try:
            torch.linalg.cholesky(out["covariance_matrix"])
        except RuntimeError:
            raise ValueError(f"init[{latent.name!r}]['covariance_matrix'] must be positive "
                             "definite") from None  # fmt: skip
    return out


def _random_probs(a: Assignment, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Responsibilities drawn uniformly on the simplex (normalised exponentials), seeded."""
    u = torch.rand(a.layout, generator=gen, dtype=like.dtype).to(like.device)
    e = -torch.log1p(-u)
    return e / e.sum(a.enum_dim, keepdim=True)


def auto_cavi(
    model: Callable,
    *args,
    num_steps: int = 500,
    tol: float = 1e-10,
    init: dict | None = None,
    seed: int = 0,
    **kwargs,
) -> AutoCaviResult:
    """Exact mean-field CAVI for a conditionally conjugate Pyro model, derived from its trace.

    Args:
        model: a Pyro model; ``model(*args, **kwargs)`` is traced once (discrete latents
            enumerated in parallel). Supported: the conjugate pairs of
            :data:`inference.conjugacy._CONJUGATE_PAIRS`, enumerated Categorical and Bernoulli
            assignments (indexing parameters with ``Vindex`` or plain indexing), plates, masks
            and scales on observed sites; anything else gets a ``ValueError`` that names the
            site and what would make it conjugate.
        num_steps: the most sweeps (>= 1). tol: stop when a sweep gains at most
            ``tol * |ELBO|`` (>= 0; 0 runs every sweep).
        init: site name -> that family's parameters (torch names, broadcastable to the site's
            shape), for some or all continuous latents; the rest start around a seeded prior
            draw. Without ``init``, a model with discrete latents starts from random
            responsibilities (seeded) and one update of the continuous latents; the sweeps then
            update the discrete latents first. With ``init``, the first sweep starts from it.
        seed: seeds the prior draw and the random responsibilities.

    Returns:
        :class:`AutoCaviResult`; its ``elbo_history`` holds the exact ELBO after every sweep.
    """
    _check_settings(model, num_steps, tol, seed, init)
    start = time.perf_counter()
    structure = analyse(model, args, kwargs, seed=seed)
    unknown = set(init or {}) - set(structure.latents)
    if unknown:
        raise ValueError(
            f"init names {sorted(unknown)}, which are not continuous latent sites of the model "
            f"(those are {list(structure.latents)})"
        )
    latents = list(structure.latents.values())
    like = latents[0].draw if latents else next(iter(structure.assignments.values())).value
    sweeper = _Sweeper(structure, like if like.is_floating_point() else like.double())
    for name, latent in structure.latents.items():
        given = (init or {}).get(name)
        params = _default_params(latent) if given is None else _checked_init(latent, given)
        sweeper.set_params(name, params)
    gen = torch.Generator().manual_seed(seed)
    for a in structure.assignments.values():
        r = _random_probs(a, gen, sweeper.like)
        sweeper.probs[a.name] = r
        sweeper.neg_entropy[a.name] = a.scale * torch.xlogy(r, r).sum()
    if init is None:
        for name in structure.latents:
            sweeper.update_latent(name)

    analysed = time.perf_counter()
    history: list[torch.Tensor] = []
    converged = False
    single = next(iter(structure.assignments.values())) if len(structure.assignments) == 1 else None
    for step in range(num_steps + 1):
        if single is None:
            elps = {f.name: sweeper.elp(f) for f in structure.factors}
        else:  # the factors of the one assignment enter through its logits alone
            elps = {f.name: sweeper.elp(f) for f in structure.factors if not f.assignments}
        total = sweeper.logits(single) if single is not None else None
        if step > 0:
            history.append(sweeper.elbo(elps, single, total))
            if not bool(torch.isfinite(history[-1])):
                raise ValueError(
                    f"auto_cavi: the ELBO is {history[-1].item()} after sweep {step}: the data "
                    "or the priors are too extreme for the dtype (use float64)"
                )
            if step > 1 and abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
                converged = True
                break
            if step == num_steps:
                break
        for a in structure.assignments.values():
            logits = total if a is single else sweeper.weighted_elps(elps, a)
            sweeper.update_assignment(a, logits / a.scale if a.scale != 1.0 else logits)
        for name in structure.latents:
            sweeper.update_latent(name)
    swept = time.perf_counter()
    params = sweeper.result_params()
    return AutoCaviResult(
        guide=AutoCaviGuide(structure, params),
        elbo=history[-1],
        elbo_history=torch.stack(history),
        params=params,
        num_steps=len(history),
        converged=converged,
        analysis_seconds=analysed - start,
        sweep_seconds=swept - analysed,
    )
