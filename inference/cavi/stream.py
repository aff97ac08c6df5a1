r"""Automatic CAVI over data read in chunks, in minibatches and across processes (for
:mod:`inference.cavi`).

In a conditionally conjugate model each global latent's update depends on the data only
through its children's messages, which are sums over the elements of the data plate
(Winn & Bishop 2005, §3-4); so is the ELBO's data part. Summed chunk by chunk, and across
processes, they are the in-memory sums. A *pass* reads every chunk once: for each it rebinds
the analysed structure to the chunk's rows (:func:`inference.cavi.analysis.rebind`: one
enumerated run of the model), recomputes the chunk's local q(Z) from the globals, adds the
chunk's messages to the accumulators, and drops the chunk.

**Exactly the in-memory sweep.** One in-memory sweep sets ``r = q(Z)`` from the globals
``g``, then updates the globals one after the other, each from the latest values of the
others. A global's data messages depend on the other globals in the same data factors (the
means of a mixture and their precisions do; the means and the Poisson rates of the earthquake
mixture do not), so the globals are cut into *stages* in model order: a stage closes before a
latent whose data factors share a latent with it. A sweep is one pass per stage (one for the
earthquake mixture, a Gaussian mixture with known precision or LDA; two for a Gaussian mixture
whose precisions are latent), each recomputing ``r`` from the globals at the start of the sweep;
after a stage's pass its latents are updated in order, from the pass's data messages plus the
messages of the factors outside the data plate (their priors) computed then. The ELBO after
sweep s needs that sweep's ``r_s = softmax(L(g_{s-1}))`` and the new globals ``g_s``. Where
every data factor depends on the row's enumerated site and its logits split into
``A(g) B^T`` (globals times data), the sweep's own pass keeps ``r_s^T B`` and the ELBO is
``<A(g_s), r_s^T B> - sum r_s log r_s`` at its end; otherwise it is computed in the first pass
of the next sweep, which evaluates the logits at both globals. A streamed run therefore equals
the in-memory run from the same start sweep by sweep, to the rounding of the sums' order.

**Stochastic** (Hoffman, Blei, Wang & Paisley 2013, JMLR 14, Algorithm 1): step t takes a
minibatch of B rows, sets its ``r`` from the globals, and moves each global's accumulator (an
affine image of its natural parameter, :mod:`inference.cavi.families`) toward the optimum it
would have if the data were N / B copies of the minibatch, by ``rho_t = (t + tau0)^-kappa``::

    eta <- (1 - rho_t) eta + rho_t (eta_prior + messages outside the plate
                                     + (N / B) * minibatch messages)

the globals in the order of a sweep, each target from the latest others (with ``rho_t = 1``
and the whole data as the minibatch, a step is a sweep). Minibatches are cut from each chunk
after shuffling it with the run's generator (the rows left at a chunk's end open the next
minibatch), as :func:`analytic.earthquake.stochastic.stochastic_cavi` cuts them.

**Across processes**: each process reads its own chunks; the accumulators, the ELBO's data
part and the row counts of a pass (or a step) are summed over the processes by the
collective's ``all_reduce_sum`` in one call, and a failure to read or check a chunk on one
process stops every process with that error (``agree``). With one process the collective is
the identity.

Chunks: a chunk is a tensor (the model's first positional argument), a tuple (its first
positional arguments) or a dict (keyword arguments), every tensor holding the chunk's rows
along its first dim; the arguments given to the driver follow (``model(*chunk, *args,
**kwargs)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch

from inference.cavi.analysis import Assignment, ModelStructure, analyse, quiet_wishart, rebind
from inference.cavi.start import checked_init, default_params, random_probs, working_dtypes
from inference.cavi.sweeps import Sweeper

CHECK_ROWS = 1024  # rows of the first chunk on which a streamed result is checked

__all__ = [
    "CHECK_ROWS",
    "Chunked",
    "Plan",
    "call_args",
    "chunk_source",
    "join_rows",
    "open_stream",
    "plan",
    "rows_of",
    "take_rows",
]


def chunk_source(data) -> Callable[[], Iterable]:
    """``data`` as a zero-argument callable returning a fresh iterable of chunks: a list or
    tuple of chunks, a re-iterable object (each ``iter()`` starts over, as
    :class:`inference.data.ParquetChunks`), or a callable returning one. A one-shot iterator
    (a generator object) cannot be read once per sweep and is refused."""
    if callable(data) and not hasattr(data, "__iter__"):
        return data
    if isinstance(data, (list, tuple)):
        return lambda: data
    if hasattr(data, "__iter__"):
        if iter(data) is data:
            raise ValueError(
                "data is an iterator, which can be read only once, and every sweep reads the "
                "data again: pass a list of chunks, or a function that returns a new iterator "
                "(lambda: my_chunks())"
            )
        return lambda: data
    raise ValueError(f"data must be a list of chunks, a re-iterable or a function returning "
                     f"an iterable of chunks, got {type(data).__name__}")  # fmt: skip


def _tensors_of(chunk) -> list:
    if torch.is_tensor(chunk):
        return [chunk]
    values = chunk.values() if isinstance(chunk, dict) else chunk
    return [v for v in values if torch.is_tensor(v)]


def rows_of(chunk, index: int) -> int:
    """The number of rows of a chunk: the first dim of its tensors, which must agree."""
    if not (torch.is_tensor(chunk) or isinstance(chunk, (tuple, dict))):
        raise ValueError(f"chunk {index} must be a tensor, a tuple of arguments or a dict of "
                         f"keyword arguments, got {type(chunk).__name__}")  # fmt: skip
    sizes = {t.shape[0] if t.dim() else None for t in _tensors_of(chunk)}
    if not sizes or None in sizes or len(sizes) > 1:
        raise ValueError(f"chunk {index}: every tensor of a chunk must hold its rows along its "
                         f"first dim, with one number of rows; got first dims "
                         f"{sorted(s for s in sizes if s is not None)}"
                         + (" and a 0-dim tensor" if None in sizes else ""))  # fmt: skip
    return sizes.pop()


def call_args(chunk, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The model's arguments for a chunk: ``(*chunk, *args), {**kwargs, **chunk}``."""
    if torch.is_tensor(chunk):
        return (chunk, *args), kwargs
    if isinstance(chunk, tuple):
        return (*chunk, *args), kwargs
    both = set(chunk) & set(kwargs)
    if both:
        raise ValueError(f"the chunks and the keyword arguments both give {sorted(both)}")
    return args, {**kwargs, **chunk}


def take_rows(chunk, index: torch.Tensor):
    """The rows ``index`` of a chunk, in the chunk's format."""
    if torch.is_tensor(chunk):
        return chunk[index]
    if isinstance(chunk, tuple):
        return tuple(v[index] if torch.is_tensor(v) else v for v in chunk)
    return {k: v[index] if torch.is_tensor(v) else v for k, v in chunk.items()}


def join_rows(a, b):
    """Two chunks' rows one after the other (``a`` may be None)."""
    if a is None:
        return b
    if torch.is_tensor(b):
        return torch.cat([a, b])
    if isinstance(b, tuple):
        return tuple(torch.cat([x, y]) if torch.is_tensor(y) else y for x, y in zip(a, b))
    return {k: torch.cat([a[k], v]) if torch.is_tensor(v) else v for k, v in b.items()}


@dataclass
class Plan:
    """What a streamed run knows from its first chunk: the analysed structure, the factors
    in the data plate (``local``) and out of it (``glob``), the one enumerated assignment of
    the data plate (``single``, None if none), the latents with factors in the data plate
    (``streamed``), the stages of a sweep (module docstring), and whether every data factor
    depends on the assignment (``deferrable``: the ELBO may then come from the sweep's own
    pass, :meth:`Chunked.run_pass`)."""

    structure: ModelStructure
    local: set
    glob: set
    single: Assignment | None
    streamed: set
    stages: list
    deferrable: bool = False  # every data factor depends on the assignment (run_pass)


def plan(model, chunk, args, kwargs, plate: str, seed: int) -> Plan:
    """Analyse the model on the first chunk (``chunk``, with the run's ``args`` and
    ``kwargs``) and split it at the data plate ``plate``; refuse what a streamed run cannot
    hold: a continuous latent in the data plate (a per-row latent with a closed-form update
    of its own), several enumerated assignments per row, or an enumerated latent outside the
    data plate. The run with discrete latents sampled (sites, plates, prior draws) is made on
    the chunk's first two rows (:func:`inference.cavi.analysis.analyse`'s ``plain``)."""
    full = call_args(chunk, args, kwargs)
    few = call_args(take_rows(chunk, slice(0, 2)), args, kwargs)
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False), quiet_wishart():
        torch.manual_seed(seed)
        try:
            trace = poutine.trace(model).get_trace(*few[0], **few[1])
        except (ValueError, RuntimeError, IndexError, TypeError) as err:
            first = str(err).splitlines()[0] if str(err) else ""
            raise ValueError(f"auto_cavi: the model fails on the first chunk's rows "
                             f"({type(err).__name__}: {first})") from None  # fmt: skip
    plates = {}
    for site in trace.nodes.values():
        if site["type"] == "sample":
            plates[site["name"]] = {f.name for f in site["cond_indep_stack"]}
    if not any(plate in names for names in plates.values()):
        seen = sorted({n for names in plates.values() for n in names})
        raise ValueError(f"data_plate {plate!r} is not a plate of the model (its plates: "
                         f"{seen})")  # fmt: skip
    for site in trace.nodes.values():  # per-row continuous latents, before the analysis
        if (site["type"] == "sample" and not site["is_observed"] and plate in plates[site["name"]]
                and not getattr(site["fn"], "has_enumerate_support", False)):  # fmt: skip
            raise ValueError(
                f"auto_cavi: the continuous latent {site['name']!r} is in the data plate "
                f"{plate!r}: a streamed run keeps no per-row state but q(Z) of one enumerated "
                "site; fit this model in memory, or make the latent global"
            )
    structure = analyse(model, *full, seed=seed, plain=few)
    local = {f.name for f in structure.factors if plate in plates[f.name]}
    glob = {f.name for f in structure.factors} - local
    for name in structure.assignments:
        if plate not in plates[name]:
            raise ValueError(
                f"auto_cavi: the enumerated latent {name!r} is outside the data "
                f"plate {plate!r}; a streamed run enumerates per-row latents only"
            )
    if len(structure.assignments) > 1:
        raise ValueError(
            f"auto_cavi: the enumerated latents {list(structure.assignments)} share the data "
            "plate: a streamed run recomputes one per row from the globals (several depend on "
            "each other's previous sweep); fit this model in memory"
        )
    single = next(iter(structure.assignments.values()), None)
    # the latents each latent's data messages depend on: the other latents of its data factors
    depends, streamed = {}, set()
    for f in structure.factors:
        if f.name not in local:
            continue
        names = set(f.latents) | ({f.value_latent} if f.value_latent else set())
        for n in f.latents:
            streamed.add(n)
            depends.setdefault(n, set()).update(names - {n})
    stages, current = [], []
    for name in structure.latents:
        if depends.get(name, set()) & set(current):
            stages.append(current)
            current = []
        current.append(name)
    if current:
        stages.append(current)
    deferrable = single is not None and all(
        single.name in f.assignments for f in structure.factors if f.name in local
    )
    return Plan(structure, local, glob, single, streamed, stages, deferrable)


class Chunked:
    """The passes of a streamed run (module docstring) for one :class:`Plan`: ``sweeper``
    holds the current globals (on the first chunk's structure), ``state()`` a copy of their
    parameters and statistics."""

    def __init__(self, model, args, kwargs, source, first, p: Plan, like, collective,
                 progress=None) -> None:  # fmt: skip
        self.model, self.args, self.kwargs = model, args, kwargs
        self.source, self.first, self.plan = source, first, p
        self.like, self.collective = like, collective
        self.progress = progress
        self.sweeper = Sweeper(p.structure, like)
        self.first_sweeper = Sweeper(p.structure, like)  # the first chunk's, kept
        self.deferring = False  # whether the last sweep gave its own ELBO
        self.rows: int | None = None  # rows over all processes, from the first pass
        self.checked = False  # the chunks' observed values are checked in the first pass
        self.varying: set = set()  # factors whose known log density differs between chunks
        self.kept = frozenset()  # those that do not, after the first pass (rebind's keep)
        self._local = None  # local_q's last answer, its key and its arguments

    # ---- the state of the globals
    def state(self) -> tuple[dict, dict]:
        return dict(self.sweeper.params), dict(self.sweeper.stats)

    def chunk_sweeper(self, structure, state) -> Sweeper:
        cs = Sweeper(structure, self.like)
        cs.params, cs.stats = dict(state[0]), dict(state[1])
        return cs

    # ---- reading the chunks
    def chunks(self):
        """(structure, rows, arguments) per non-empty chunk of this process: the first chunk's
        analysed structure, the others rebound (their data checked in the first pass)."""
        for index, chunk in enumerate(self.source()):
            rows = rows_of(chunk, index)
            if rows == 0:
                continue
            args, kwargs = call_args(chunk, self.args, self.kwargs)
            if index == self.first:
                structure = self.plan.structure
            else:
                try:
                    structure = rebind(self.plan.structure, self.model, args, kwargs,
                                       check=not self.checked, keep=self.kept)  # fmt: skip
                except ValueError as err:
                    raise ValueError(f"chunk {index}: {err}") from None
                if not self.checked:  # known log densities that differ from the first chunk's
                    for f, g in zip(structure.factors, self.plan.structure.factors):
                        if f.const_elp is not None and not torch.equal(f.const_elp, g.const_elp):
                            self.varying.add(f.name)
            yield structure, rows, (args, kwargs)

    def summed(self, local_work):
        """``local_work()`` (a list of tensors) on every process, or the error of the first
        process where it failed raised on all; then the tensors summed over the processes in
        one call."""
        parts = self.collective.agree(local_work)
        flat = torch.cat([p.reshape(-1).to(self.like.dtype) for p in parts])
        flat = self.collective.all_reduce_sum(flat)
        out, start = [], 0
        for p in parts:
            out.append(flat[start : start + p.numel()].reshape(p.shape))
            start += p.numel()
        return out

    def set_r(self, cs: Sweeper, source) -> None:
        """q(Z) of a chunk: softmax of the logits at the globals ``source`` (a state), or the
        random start (``source`` a generator)."""
        a = cs.s.assignments[self.plan.single.name]
        if isinstance(source, torch.Generator):
            r = random_probs(a, source, self.like)
            cs.probs[a.name] = r
            cs.neg_entropy[a.name] = a.scale * torch.xlogy(r, r).sum()
            return
        cs.params, cs.stats = dict(source[0]), dict(source[1])
        logits = cs.logits(a)
        cs.update_assignment(a, logits / a.scale if a.scale != 1.0 else logits)

    def first_columns(self, state):
        """The logits' columns (:meth:`Sweeper.logit_columns`) of the first chunk at the
        globals ``state``: (A, B, signature), or None if they do not split."""
        cs = self.first_sweeper
        cs.params, cs.stats = dict(state[0]), dict(state[1])
        a = cs.s.assignments[self.plan.single.name]
        return cs.logit_columns(a)

    def run_pass(self, stage: list, r_from, elbo_from=None, columns: bool = False):
        """One pass: per chunk, q(Z) from ``r_from`` (a state; the seed of the random start,
        drawn again alike every pass; None: no q(Z)); with ``elbo_from`` (the state whose
        logits gave the q(Z) of the sweep that made the current globals) also the ELBO's data
        part at the current globals, whose q(Z) then comes from the current globals; then
        the data messages of the stage's streamed latents at the current globals.

        With ``columns`` (q(Z) from a state) the logits are formed as ``A @ B^T``
        (:meth:`Sweeper.logit_columns`) and ``M = sum over rows of r^T B`` and
        ``sum r log r`` are kept: the ELBO's data part at any later globals g is then
        ``<A(g), M> - sum r log r``, ``A(g)`` from the first chunk alone -- valid when every
        chunk's columns have the first chunk's signature and data-only B sides
        (``deferred``).

        Returns (messages per latent of ``stage`` (None for one without data factors), the
        ELBO's data part or None, (M, sum r log r) or None), summed over the chunks and the
        processes."""
        p, like = self.plan, self.like
        current = self.state()
        names = [n for n in stage if n in p.streamed]
        generator = torch.Generator().manual_seed(r_from) if isinstance(r_from, int) else None
        reference = self.first_columns(r_from) if columns else None
        if columns:  # the same columns on every process (each has its own first chunk)
            seen = self.collective.gather(None if reference is None else reference[2])
            if any(sig != seen[0] for sig in seen):
                reference = None
        columns = reference is not None and all(
            isinstance(x, str) or x[-1] for x in reference[2]
        )  # every B side data alone

        def work():
            totals = None
            elbo = torch.zeros((), dtype=like.dtype, device=like.device)
            rows, ok = 0, 1.0
            M = torch.zeros_like(reference[0]) if columns else None
            neg = torch.zeros((), dtype=like.dtype, device=like.device)
            for structure, n, _ in self.chunks():
                rows += n
                cs = self.chunk_sweeper(structure, current)
                a = cs.s.assignments[p.single.name] if p.single is not None else None
                if elbo_from is not None:
                    total = None
                    if a is not None:
                        self.set_r(cs, elbo_from)
                        cs.params, cs.stats = dict(current[0]), dict(current[1])
                        total = cs.logits(a)
                    elps = {
                        f.name: cs.elp(f)
                        for f in cs.s.factors
                        if f.name in p.local and not (a is not None and f.assignments)
                    }
                    elbo = elbo + cs.elbo(elps, a, total, factors=p.local, latents=False,
                                          assignments=True)  # fmt: skip
                    if a is not None:
                        cs.update_assignment(a, total / a.scale if a.scale != 1.0 else total)
                elif a is not None and columns:
                    cs.params, cs.stats = dict(r_from[0]), dict(r_from[1])
                    found = cs.logit_columns(a)
                    if found is None or found[2] != reference[2]:
                        ok = 0.0
                        logits = cs.logits(a)
                    else:
                        logits = (found[0] @ found[1].T).reshape(a.layout)
                    cs.update_assignment(a, logits / a.scale if a.scale != 1.0 else logits)
                    if found is not None and ok:
                        M = M + cs.probs[a.name].reshape(M.shape[0], -1) @ found[1]
                    neg = neg + cs.neg_entropy[a.name]
                    cs.params, cs.stats = dict(current[0]), dict(current[1])
                elif a is not None and r_from is not None:
                    self.set_r(cs, generator if generator is not None else r_from)
                    cs.params, cs.stats = dict(current[0]), dict(current[1])
                messages = [cs.accumulate(name, p.local) for name in names]
                if totals is None:
                    totals = messages
                else:
                    totals = [[x + y for x, y in zip(t, m)] for t, m in zip(totals, messages)]
                if self.progress is not None:
                    self.progress(n)
            if totals is None:  # no rows on this process: zeros of the accumulators' shapes
                cs = self.chunk_sweeper(p.structure, current)
                totals = [[torch.zeros_like(x) for x in cs.accumulate(name, set())]
                          for name in names]  # fmt: skip
            flat = [x for t in totals for x in t]
            kept = [M, neg, torch.tensor(1.0 - ok, dtype=like.dtype)] if columns else []
            return flat + kept + [elbo, torch.tensor(float(rows), dtype=like.dtype)]

        summed = self.summed(work)
        rows = int(summed[-1].item())
        self._check_rows(rows)
        if not self.checked:
            const = {f.name for f in self.plan.structure.factors if f.const_elp is not None}
            self.kept = frozenset(const - self.varying)
        self.checked = True
        out, start = [], 0
        for name in names:
            k = len(self.sweeper.s.latents[name].family.component_dims)
            out.append(summed[start : start + k])
            start += k
        messages = dict(zip(names, out))
        deferred = None
        if columns and float(summed[start + 2]) == 0.0:  # no process saw other columns
            deferred = (summed[start], summed[start + 1])
        part = summed[-2] if elbo_from is not None else None
        return [messages.get(name) for name in stage], part, deferred

    def _check_rows(self, rows: int) -> None:
        if self.rows is None:
            if rows == 0:
                raise ValueError("auto_cavi: the data has no rows: every chunk is empty")
            self.rows = rows
        elif rows != self.rows:
            raise ValueError(
                f"auto_cavi: the chunks changed between passes: this pass read {rows} rows, the "
                f"first {self.rows}; data must give the same rows on every pass"
            )

    def update(self, stage: list, messages: list, scale: float = 1.0, rho: float = 1.0) -> None:
        """The stage's latents in order: accumulator = prior and factors outside the data plate
        (at the current globals) + ``scale`` * data messages; moved by ``rho`` from the current
        accumulator (1: replaced)."""
        gs = self.sweeper
        for name, data in zip(stage, messages):
            acc = gs.accumulate(name, self.plan.glob)
            if data is not None:
                acc = [a + (d * scale if scale != 1.0 else d) for a, d in zip(acc, data)]
            if rho != 1.0:
                old = gs.s.latents[name].family.natural(gs.params[name])
                acc = [(1.0 - rho) * o.reshape(a.shape) + rho * a for o, a in zip(old, acc)]
            gs.set_accumulator(name, acc)

    def global_elbo(self) -> torch.Tensor:
        """The ELBO's part outside the data plate: its factors and the globals' entropies."""
        gs, p = self.sweeper, self.plan
        elps = {f.name: gs.elp(f) for f in gs.s.factors if f.name in p.glob}
        return gs.elbo(elps, None, None, factors=p.glob, latents=True, assignments=False)

    def sweep(self, r_from, elbo_from=None, stop=None) -> torch.Tensor | None:
        """One sweep of the globals, stage by stage, with q(Z) from ``r_from`` (a state, or
        the seed of the random start; see :meth:`run_pass`). With ``elbo_from`` the first pass
        also gives the ELBO at the current globals (returned), and q(Z) comes from the
        current globals; if ``stop(elbo)`` is then true, the globals are left as they are.
        Without, where the ELBO can be deferred (:meth:`run_pass`) the ELBO after this sweep
        is returned, and :attr:`deferring` says so; else None."""
        value, deferred = None, None
        columns = elbo_from is None and self.plan.deferrable and isinstance(r_from, tuple)
        for i, stage in enumerate(self.plan.stages):
            with_elbo = i == 0 and elbo_from is not None
            if with_elbo or any(n in self.plan.streamed for n in stage) or (i == 0 and columns):
                messages, part, found = self.run_pass(
                    stage, r_from, elbo_from if with_elbo else None, columns and i == 0
                )
                deferred = found if i == 0 else deferred
            else:
                messages, part = [None] * len(stage), None
            if with_elbo:
                value = self.global_elbo() + part
                if stop is not None and stop(value):
                    return value
            self.update(stage, messages)
        self.deferring = deferred is not None
        if deferred is not None:
            M, neg = deferred
            A = self.first_columns(self.state())[0]
            value = self.global_elbo() + (A * M).sum() - neg
        return value

    def elbo_after(self, elbo_from) -> torch.Tensor:
        """The ELBO at the current globals and the q(Z) that the globals ``elbo_from`` gave
        (the ELBO after a sweep), in one pass."""
        _, part, _ = self.run_pass([], None, elbo_from)
        return self.global_elbo() + part

    def elbo_pass(self) -> torch.Tensor:
        """The exact ELBO of the current globals with the q(Z) they give each row (the
        optimal one), in one pass."""
        state = self.state()
        _, part, _ = self.run_pass([], state, state)
        return self.global_elbo() + part

    def local_q(self, args, kwargs) -> tuple[ModelStructure, dict, Sweeper]:
        """For rows given as the model's arguments: their structure, q's parameters with the
        q(Z) the current globals give them, and the sweeper holding that q. The last answer
        is kept for the same argument objects (a guide is called once per draw)."""
        key = (tuple(map(id, args)), tuple((k, id(v)) for k, v in kwargs.items()),
               tuple(map(id, self.sweeper.params.values())))  # fmt: skip
        if self._local is not None and self._local[0] == key:
            return self._local[1]
        structure = rebind(self.plan.structure, self.model, args, kwargs)
        cs = self.chunk_sweeper(structure, self.state())
        if self.plan.single is not None:
            a = cs.s.assignments[self.plan.single.name]
            logits = cs.logits(a)
            cs.update_assignment(a, logits / a.scale if a.scale != 1.0 else logits)
        self._local = (key, (cs.s, cs.result_params(), cs), (args, kwargs))  # ids stay valid
        return self._local[1]

    def chunk_elbo(self, cs: Sweeper) -> torch.Tensor:
        """The ELBO of the model on one chunk's rows alone, at the q of :meth:`local_q`."""
        a = cs.s.assignments[self.plan.single.name] if self.plan.single is not None else None
        elps = {f.name: cs.elp(f) for f in cs.s.factors if not (a is not None and f.assignments)}
        return cs.elbo(elps, a, cs.logits(a) if a is not None else None)


def open_stream(model, args, kwargs, data, data_plate, init, seed, collective,
                progress=None) -> Chunked:  # fmt: skip
    """A :class:`Chunked` run: the data's first non-empty chunk analysed (on every process,
    each its own), the globals at their start (``init`` or around a seeded prior draw, as
    :func:`inference.cavi.auto_cavi` starts them; not yet updated from any q(Z)).

    Raises:
        ValueError: bad data or ``data_plate``, an ``init`` of an enumerated site (per-row
            state a streamed run does not keep), what :func:`plan` refuses.
    """
    source = chunk_source(data)
    if not isinstance(data_plate, str) or not data_plate:
        raise ValueError(f"data_plate must name the model's data plate (a string), got "
                         f"{data_plate!r}")  # fmt: skip

    def first():
        for index, chunk in enumerate(source()):
            if rows_of(chunk, index):
                return index, chunk
        raise ValueError("auto_cavi: the data has no rows: every chunk is empty")

    index, chunk = collective.agree(first)
    p = collective.agree(lambda: plan(model, chunk, args, kwargs, data_plate, seed))
    s = p.structure
    unknown = set(init or {}) - set(s.latents) - set(s.assignments)
    if unknown:
        raise ValueError(f"init names {sorted(unknown)}, which are not latent sites of the "
                         f"model (those are {list(s.latents) + list(s.assignments)})")  # fmt: skip
    given = sorted(set(init or {}) & set(s.assignments))
    if given:
        raise ValueError(f"init gives q of the enumerated {given}: a streamed run keeps no "
                         "per-row state; give the continuous latents only")  # fmt: skip
    if not s.latents:
        raise ValueError("auto_cavi: the model has no global latent sites: a streamed run "
                         "has nothing to accumulate")  # fmt: skip
    like, coarsest = working_dtypes(s)
    ch = Chunked(model, args, kwargs, source, index, p, like, collective, progress)
    # the Monte Carlo check's rows: the first chunk's first CHECK_ROWS (its draws run the model
    # with q(Z) sampled, which for some models gathers a parameter row per data row)
    ch.check_args = call_args(take_rows(chunk, slice(0, CHECK_ROWS)), args, kwargs)
    ch.coarsest = coarsest
    for name, latent in s.latents.items():
        value = (init or {}).get(name)
        ch.sweeper.set_params(name, default_params(latent) if value is None
                              else checked_init(latent, value))  # fmt: skip
    return ch
