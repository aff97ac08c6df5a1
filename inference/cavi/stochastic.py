r"""Stochastic automatic CAVI: Hoffman, Blei, Wang & Paisley (2013), "Stochastic Variational
Inference", JMLR 14, Algorithm 1, for any model :func:`inference.cavi.auto_cavi` accepts.

Step t takes a minibatch of B rows, sets its q(Z) from the globals, and moves each global's
accumulator (an affine image of its natural parameter, :mod:`inference.cavi.families`) toward
the optimum it would have if the data were N / B copies of the minibatch (their eq. 21-23)::

    eta <- (1 - rho_t) eta + rho_t eta_hat,   rho_t = (t + tau0)^(-kappa),  t = 1, 2, ...

``eta_hat`` is the prior's accumulator plus the messages of the factors outside the data plate
plus N / B times the minibatch's messages, the globals taken in the order of a sweep, each
from the latest others (:mod:`inference.cavi.stream`); with ``rho_t = 1`` and all the rows in
one minibatch a step is exactly one sweep of :func:`inference.cavi.auto_cavi`. A convex
combination of valid natural parameters is valid, so every q stays proper. With
``sum rho_t = inf`` and ``sum rho_t^2 < inf`` (kappa in (0.5, 1]) the steps converge to a local
optimum (Robbins & Monro 1951).

Minibatches are cut from each chunk after shuffling its rows with the run's generator (the
rows left at a chunk's end open the next minibatch; after the last chunk the data starts over),
as :func:`analytic.earthquake.stochastic.stochastic_cavi` cuts them. Across processes the
minibatch messages are summed, so one step uses ``P * B`` rows, scaled by ``N / (P * B)``.
The ELBO reported is exact: one streamed pass with the q(Z) the globals give each row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inference.cavi.analysis import rebind
from inference.cavi.auto import AutoCaviGuide, check_settings, streamed_guide
from inference.cavi.stream import call_args, join_rows, open_stream, rows_of, take_rows
from inference.distributed import Collective

__all__ = ["StochasticAutoCaviResult", "step_size", "stochastic_auto_cavi"]


@dataclass(frozen=True)
class StochasticAutoCaviResult:
    """Result of :func:`stochastic_auto_cavi`.

    Attributes:
        guide: :class:`inference.cavi.AutoCaviGuide`: the globals' q, and for the rows it is
            called with the q(Z) the globals give them.
        elbo: the exact ELBO at the end (0-dim; loss = -elbo).
        elbo_history: the exact ELBO at every evaluation, shape (E,); passes: the passes over
            the data used before each, shape (E,).
        params: continuous latent -> its q's parameters (torch names).
        num_steps: steps taken. analysis_seconds: analysing the first chunk; step_seconds:
            the steps and evaluations (wall clock).
    """

    guide: AutoCaviGuide
    elbo: torch.Tensor
    elbo_history: torch.Tensor
    passes: torch.Tensor
    params: dict
    num_steps: int
    analysis_seconds: float = 0.0
    step_seconds: float = 0.0


def step_size(t: int, tau0: float, kappa: float) -> float:
    """``rho_t = (t + tau0)^(-kappa)``, the length of step t = 1, 2, ..."""
    return (t + tau0) ** (-kappa)


def _check(batch_size, passes, tau0, kappa, eval_every) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for name, value in (("passes", passes), ("eval_every", eval_every)):
        if value is None and name == "eval_every":
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and 0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(tau0, bool) or not isinstance(tau0, (int, float)) or not 0 <= tau0 < math.inf:
        raise ValueError(f"tau0 must be a finite number >= 0, got {tau0!r}")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.5 < kappa <= 1:
        raise ValueError(
            f"kappa must be in (0.5, 1] (Robbins-Monro: sum rho_t = inf, sum rho_t^2 < inf), "
            f"got {kappa!r}"
        )


def _minibatches(source, batch_size: int, generator: torch.Generator):
    """Endless minibatches of ``batch_size`` rows (module docstring)."""
    left = None
    while True:
        for index, chunk in enumerate(source()):
            n = rows_of(chunk, index)
            if n == 0:
                continue
            joined = join_rows(left, take_rows(chunk, torch.randperm(n, generator=generator)))
            total = rows_of(joined, index)
            stop = total - total % batch_size
            for start in range(0, stop, batch_size):
                yield take_rows(joined, slice(start, start + batch_size))
            left = take_rows(joined, slice(stop, total)) if stop < total else None


def stochastic_auto_cavi(
    model: Callable,
    *args,
    data,
    data_plate: str,
    batch_size: int,
    passes: float = 1.0,
    tau0: float = 1.0,
    kappa: float = 0.7,
    init: dict | None = None,
    seed: int = 0,
    eval_every: float | None = None,
    check_draws: int = 100,
    collective: Collective | None = None,
    progress: Callable[[int], None] | None = None,
    **kwargs,
) -> StochasticAutoCaviResult:
    """Stochastic CAVI (module docstring) for a conditionally conjugate Pyro model over rows
    read in chunks.

    Args:
        model, args, kwargs, data, data_plate, init, seed, check_draws, collective: as for
            :func:`inference.cavi.auto_cavi` with ``data``; without ``init`` the run starts
            where :func:`inference.cavi.auto_cavi` does (random q(Z), seeded, and one exact
            update of the globals: one pass).
        batch_size: rows per minibatch in this process.
        passes: how much data to use, in passes over the rows (> 0): ``ceil(passes * N / B)``
            steps, B the rows per step over all processes.
        tau0, kappa: the step sizes ``rho_t = (t + tau0)^(-kappa)``, tau0 >= 0, kappa in
            (0.5, 1].
        eval_every: the exact ELBO also after every this many passes (None: at the end only).
        progress: called with the number of rows of each minibatch (this process's).

    Returns:
        :class:`StochasticAutoCaviResult`.

    Raises:
        ValueError: a bad setting (named), what :func:`inference.cavi.auto_cavi` refuses.
    """
    check_settings(model, 1, 0.0, seed, init, check_draws)
    _check(batch_size, passes, tau0, kappa, eval_every)
    collective = collective if collective is not None else Collective(0, 1, torch.device("cpu"))
    start = time.perf_counter()
    ch = open_stream(model, args, kwargs, data, data_plate, init, seed, collective)
    analysed = time.perf_counter()
    p = ch.plan
    if init is None:  # auto_cavi's start (and the count of rows)
        ch.sweep(seed if p.single is not None else ch.state())
    else:
        ch.run_pass([], None)  # the count of rows
    N = ch.rows
    batches = _minibatches(ch.source, batch_size, torch.Generator().manual_seed(seed))
    num_steps, t, seen = None, 0, 0
    next_eval = eval_every if eval_every is not None else math.inf
    marks, history = [], []
    while num_steps is None or t < num_steps:
        t += 1
        rho = step_size(t, tau0, kappa)
        batch = next(batches)
        rows = _step(ch, batch, rho, N)
        if num_steps is None:  # the first step tells the rows per step over all processes
            num_steps = max(1, math.ceil(passes * N / rows))
        seen += rows
        if progress is not None:
            progress(rows_of(batch, 0))
        if seen / N >= next_eval and t < num_steps:
            history.append(ch.elbo_pass())
            marks.append(seen / N)
            next_eval += eval_every
    history.append(ch.elbo_pass())
    marks.append(seen / N)
    stepped = time.perf_counter()
    params, guide = streamed_guide(ch, model, check_draws, seed, collective)
    return StochasticAutoCaviResult(
        guide=guide,
        elbo=history[-1],
        elbo_history=torch.stack(history),
        passes=torch.tensor(marks, dtype=torch.float64),
        params=params,
        num_steps=t,
        analysis_seconds=analysed - start,
        step_seconds=stepped - analysed,
    )


def _step(ch, batch, rho: float, N: int) -> int:
    """One step on a minibatch (module docstring); returns the rows it used over all
    processes."""
    p = ch.plan
    held = {}

    def first_stage():
        args, kwargs = call_args(batch, ch.args, ch.kwargs)
        try:
            structure = rebind(p.structure, ch.model, args, kwargs, check=False)
        except ValueError as err:
            raise ValueError(f"minibatch: {err}") from None
        cs = held["cs"] = ch.chunk_sweeper(structure, ch.state())
        if p.single is not None:
            ch.set_r(cs, ch.state())
            cs.params, cs.stats = ch.state()
        return stage_messages(p.stages[0]) + [torch.tensor(float(rows_of(batch, 0)))]

    def stage_messages(stage):
        cs = held["cs"]
        return [x for n in stage if n in p.streamed for x in cs.accumulate(n, p.local)]

    rows = None
    for i, stage in enumerate(p.stages):
        if i == 0:
            summed = ch.summed(first_stage)
            rows = int(summed.pop().item())
        else:
            held["cs"].params, held["cs"].stats = ch.state()
            summed = ch.summed(lambda stage=stage: stage_messages(stage)) if any(
                n in p.streamed for n in stage) else []  # fmt: skip
        messages, start = [], 0
        for name in stage:
            if name not in p.streamed:
                messages.append(None)
                continue
            k = len(ch.sweeper.s.latents[name].family.component_dims)
            messages.append(summed[start : start + k])
            start += k
        ch.update(stage, messages, scale=N / rows, rho=rho)
    return rows
