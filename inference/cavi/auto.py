r"""Automatic CAVI: closed-form mean-field updates derived from a conjugate Pyro model.

``auto_cavi(model, *args, **kwargs)`` traces the model once
(:func:`inference.cavi.analysis.analyse`: each latent's family, and for every site which latent
fills which parameter, through which index), then runs coordinate ascent with the exact
updates of variational message passing (Winn & Bishop 2005, JMLR 6, §3-4; Hoffman, Blei,
Wang & Paisley 2013, JMLR 14, §2.2 and eq. 15; Bishop 2006, PRML eq. 10.9):

* an enumerated discrete latent Z (Categorical or Bernoulli, assignment of a mixture):
  ``log q*(Z = k) = sum_f w_f E_q[log f | Z = k] + const`` over the factors f that depend on Z,
  the other assignments averaged under their own q; normalised over k (softmax);
* a continuous latent in a conjugate family: its natural parameters are its prior's plus, for
  every site that uses it, the expected sufficient statistics that site sends
  (:mod:`inference.cavi.families`), weighted by the site's scale, mask and the q-probabilities
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
import pyro.poutine as poutine
import torch

from inference.cavi.analysis import ModelStructure, analyse, quiet_wishart
from inference.cavi.start import (
    checked_init,
    checked_probs,
    default_params,
    random_probs,
    working_dtypes,
)
from inference.cavi.stream import open_stream
from inference.cavi.sweeps import Sweeper
from inference.distributed import Collective

__all__ = [
    "AutoCaviGuide",
    "AutoCaviResult",
    "auto_cavi",
    "check_bound",
    "check_settings",
    "monte_carlo_elbo",
    "streamed_guide",
]


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
    inside the model's plates (same names, sizes and dims; a discrete site the model scales is
    scaled alike), so ``Predictive``, Pyro's ELBOs and the diagnostics of
    :mod:`inference.diagnostics` run on it, and Pyro's ``Trace_ELBO`` of it estimates the ELBO
    that :func:`auto_cavi` reports."""

    def __init__(self, structure: ModelStructure, params: dict, local=None) -> None:
        self._structure = structure
        self.params = params
        self._local = local  # streamed: (args, kwargs) -> (their structure, q with their q(Z))

    def distribution(self, name: str, params: dict | None = None) -> dist.TorchDistribution:
        """q of site ``name`` as a Pyro distribution with the site's batch and event shape
        (``params``: the parameters to use, by default :attr:`params`)."""
        s = self._structure
        params = self.params if params is None else params
        if name in s.assignments:
            a = s.assignments[name]
            if a.family == "Bernoulli":
                return dist.Bernoulli(probs=params[name]["probs"])
            return dist.Categorical(probs=params[name]["probs"])
        latent = s.latents[name]
        q = getattr(dist, latent.family.name)(**params[name])
        extra = latent.event_dim - latent.family.row_dims
        return q.to_event(extra) if extra else q

    def __call__(self, *args, **kwargs) -> dict:
        s, params = self._structure, self.params
        if self._local is not None:  # a streamed fit: q(Z) of these rows, from the globals
            s, params = self._local(args, kwargs)
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
                scale = s.assignments[name].scale if name in s.assignments else 1.0
                if scale != 1.0:  # as the model scales this site's log p(z), so its log q(z)
                    stack.enter_context(poutine.scale(scale=scale))
                out[name] = pyro.sample(name, self.distribution(name, params))
        return out


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def monte_carlo_elbo(model, guide, args, kwargs, num_draws: int, seed: int):
    """Pyro's ``Trace_ELBO`` estimate of the ELBO of ``guide``, E_q[log p(x, z) - log q(z)]
    (every site's scale and mask applied, discrete sites drawn from the guide), from
    ``num_draws`` independent draws: (mean, standard error), floats. Seeded; the global random
    state is left as it was."""
    values = []
    with (
        torch.random.fork_rng(devices=[]),
        torch.no_grad(),
        pyro.validation_enabled(False),
        quiet_wishart(),
    ):
        torch.manual_seed(seed)
        for _ in range(num_draws):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            replayed = poutine.replay(model, trace=guide_trace)
            model_trace = poutine.trace(replayed).get_trace(*args, **kwargs)
            values.append(float(model_trace.log_prob_sum() - guide_trace.log_prob_sum()))
    mean = math.fsum(values) / num_draws
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (num_draws - 1))
    return mean, sd / math.sqrt(num_draws)


def check_bound(model, guide, args, kwargs, elbo, num_draws: int, seed: int, dtype) -> None:
    """Raise unless ``elbo`` agrees with :func:`monte_carlo_elbo` of the returned guide within
    6 standard errors, plus 1000 ulps of the model's coarsest ``dtype`` times |ELBO| (for a q so
    exact that every draw gives the same number, and for float32 constants that Pyro's own
    densities round): the second line of defence, should a model use a latent in a way no
    probe run showed."""
    mean, se = monte_carlo_elbo(model, guide, args, kwargs, num_draws, seed)
    slack = 6 * se + 1000 * torch.finfo(dtype).eps * max(1.0, abs(elbo.item()))
    if not abs(elbo.item() - mean) <= slack:
        raise ValueError(
            f"auto_cavi: the closed-form ELBO {elbo.item():.6g} disagrees with Pyro's Monte "
            f"Carlo ELBO of the same q, {mean:.6g} +- {se:.2g} ({num_draws} draws): the model "
            "uses a latent in a way the structure analysis did not see, so its updates are not "
            "this model's. Fit it by SVI instead (an autoguide with Trace_ELBO, or "
            "TraceEnum_ELBO for discrete latents)"
        )


def check_settings(model, num_steps, tol, seed, init, check_draws) -> None:
    """The settings :func:`auto_cavi` and :func:`inference.cavi.stochastic_auto_cavi` share,
    each refused by name before any work."""
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
    whole = isinstance(check_draws, int) and not isinstance(check_draws, bool)
    if not (whole and (check_draws == 0 or check_draws >= 2)):
        raise ValueError(f"check_draws must be 0 or an integer >= 2, got {check_draws!r}")


def auto_cavi(
    model: Callable,
    *args,
    num_steps: int = 500,
    tol: float = 1e-10,
    init: dict | None = None,
    seed: int = 0,
    check_draws: int = 100,
    data=None,
    data_plate: str | None = None,
    collective: Collective | None = None,
    progress: Callable[[int], None] | None = None,
    **kwargs,
) -> AutoCaviResult:
    """Exact mean-field CAVI for a conditionally conjugate Pyro model, derived from its trace.

    Args:
        model: a Pyro model; ``model(*args, **kwargs)`` is traced once (discrete latents
            enumerated in parallel). Supported: the conjugate pairs of
            :mod:`inference.cavi.analysis`, enumerated Categorical and Bernoulli
            assignments (indexing parameters with ``Vindex`` or plain indexing), plates, masks
            and scales on observed sites; anything else gets a ``ValueError`` that names the
            site and what would make it conjugate.
        num_steps: the most sweeps (>= 1). tol: stop when a sweep gains at most
            ``tol * |ELBO|`` (>= 0; 0 runs every sweep).
        init: site name -> that family's parameters (torch names, broadcastable to the site's
            shape), for some or all continuous latents, and for enumerated sites
            ``{"probs": p}`` (shape batch_shape + (K,); a Bernoulli's batch_shape). Without
            ``init``, a model with discrete latents starts from random responsibilities
            (seeded) and one update of the continuous latents; the sweeps then update the
            discrete latents first. With ``init`` of continuous latents only, the first sweep
            starts from it (the rest around a seeded prior draw); with given responsibilities,
            the continuous latents not given start from one update given them.
        seed: seeds the prior draw, the random responsibilities and the check's draws.
        check_draws: after the sweeps, the closed-form ELBO is compared with Pyro's Monte Carlo
            ELBO of the returned guide from this many draws (:func:`monte_carlo_elbo`), and a
            disagreement beyond 6 standard errors raises; 0 skips the check. Streamed: on the
            first chunk's first 1,024 rows, with the q(Z) the final globals give them.
        data: the rows of the plate ``data_plate``, in chunks, for data larger than memory
            (:mod:`inference.cavi.stream`): a list of chunks, a re-iterable (such as
            :class:`inference.data.ParquetChunks`) or a function returning an iterable; a
            chunk is a tensor, a tuple (the model's first positional arguments) or a dict (keyword
            arguments), every tensor with the chunk's rows along its first dim; the model is
            called as ``model(*chunk, *args, **kwargs, **chunk)``. The model is analysed on
            the first chunk; each sweep then reads every chunk, and equals the in-memory sweep
            on all the rows. Per-row state (q(Z) of one enumerated site per row) is recomputed
            chunk by chunk and never stored; ``init`` gives continuous latents only.
        data_plate: the name of the model's plate over the rows (with ``data``).
        collective: with ``data``, a :class:`inference.distributed.Collective` (from
            :func:`inference.distributed.process_group` under ``torchrun``): each process
            passes its own share of the chunks, and the sums of a sweep are added over the
            processes; every process returns the same result. None: one process.
        progress: with ``data``, called with the number of rows of each chunk read.

    Returns:
        :class:`AutoCaviResult`; its ``elbo_history`` holds the exact ELBO after every sweep.
        Streamed, its ``params`` hold the continuous latents, and its guide computes q(Z) for
        the rows it is called with, from the final globals.

    Raises:
        ValueError: naming the site and what would make it conjugate, before any sweep; or,
            after the sweeps, if the check disagrees (the model is not what the analysis saw).
    """
    check_settings(model, num_steps, tol, seed, init, check_draws)
    start = time.perf_counter()
    if data is not None:
        collective = collective if collective is not None else Collective(0, 1, torch.device("cpu"))
        return _streamed(model, args, kwargs, num_steps, tol, init, seed, check_draws, data,
                         data_plate, collective, progress, start)  # fmt: skip
    for name, value in (("data_plate", data_plate), ("collective", collective),
                        ("progress", progress)):  # fmt: skip
        if value is not None:
            raise ValueError(f"{name} is for a streamed run: give data as well")
    structure = analyse(model, args, kwargs, seed=seed)
    unknown = set(init or {}) - set(structure.latents) - set(structure.assignments)
    if unknown:
        raise ValueError(
            f"init names {sorted(unknown)}, which are not latent sites of the model (those are "
            f"{list(structure.latents) + list(structure.assignments)})"
        )
    latents = list(structure.latents.values())
    if not latents and not structure.assignments:
        raise ValueError("auto_cavi: the model has no latent sites: there is nothing to infer")
    like, coarsest = working_dtypes(structure)
    sweeper = Sweeper(structure, like)
    for name, latent in structure.latents.items():
        given = (init or {}).get(name)
        params = default_params(latent) if given is None else checked_init(latent, given)
        sweeper.set_params(name, params)
    gen = torch.Generator().manual_seed(seed)
    for a in structure.assignments.values():
        given = (init or {}).get(a.name)
        if given is None:
            r = random_probs(a, gen, sweeper.like)
        else:
            r = checked_probs(a, given, sweeper.like)
        sweeper.probs[a.name] = r
        sweeper.neg_entropy[a.name] = a.scale * torch.xlogy(r, r).sum()
    discrete_given = any(n in structure.assignments for n in init or {})
    if init is None or discrete_given:  # the latents not given start from the q(Z) above
        for name in structure.latents:
            if name not in (init or {}):
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
    guide = AutoCaviGuide(structure, params)
    if check_draws:
        check_bound(model, guide, args, kwargs, history[-1], check_draws, seed, coarsest)
    return AutoCaviResult(
        guide=guide,
        elbo=history[-1],
        elbo_history=torch.stack(history),
        params=params,
        num_steps=len(history),
        converged=converged,
        analysis_seconds=analysed - start,
        sweep_seconds=swept - analysed,
    )


def _streamed(model, args, kwargs, num_steps, tol, init, seed, check_draws, data, data_plate,
              collective, progress, start) -> AutoCaviResult:  # fmt: skip
    """:func:`auto_cavi` over chunks: the sweeps of the in-memory loop, each a pass per stage
    (:class:`inference.cavi.stream.Chunked`)."""
    ch = open_stream(model, args, kwargs, data, data_plate, init, seed, collective, progress)
    single = ch.plan.single
    analysed = time.perf_counter()
    if init is None:  # the in-memory start: random q(Z) (seeded), then the globals from it
        ch.sweep(seed if single is not None else ch.state())
    history: list[torch.Tensor] = []
    converged = False
    previous = ch.state()
    value = ch.sweep(previous)  # sweep 1, with its own ELBO where the data part can wait
    deferring = ch.deferring
    step = 1
    while True:
        stop = step == num_steps
        current = ch.state()
        if deferring and value is None:  # a sweep whose ELBO could not wait (not expected)
            value = ch.elbo_after(previous)
        elif not deferring:  # the ELBO after sweep `step`, in the first pass of the next
            if stop:
                value = ch.elbo_after(previous)
            else:
                value = ch.sweep(current, elbo_from=previous,
                                 stop=lambda v: _stops(v, history, tol))  # fmt: skip
        history.append(value)
        if not bool(torch.isfinite(value)):
            raise ValueError(
                f"auto_cavi: the ELBO is {value.item()} after sweep {step}: the data or the "
                "priors are too extreme for the dtype (use float64)"
            )
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
            converged = True
            break
        if stop:
            break
        previous = current
        step += 1
        if deferring:
            value = ch.sweep(current)
    swept = time.perf_counter()
    params, guide = streamed_guide(ch, model, check_draws, seed, collective)
    return AutoCaviResult(
        guide=guide,
        elbo=history[-1],
        elbo_history=torch.stack(history),
        params=params,
        num_steps=len(history),
        converged=converged,
        analysis_seconds=analysed - start,
        sweep_seconds=swept - analysed,
    )


def streamed_guide(
    ch, model, check_draws: int, seed: int, collective
) -> tuple[dict, AutoCaviGuide]:
    """The globals' parameters of a streamed run (:class:`inference.cavi.stream.Chunked`) and
    its guide, which computes q(Z) for the rows it is called with; with ``check_draws``, the
    guide checked by :func:`check_bound` on the first chunk's first rows on every process
    (``ch.check_args``), a failure anywhere raised on all."""
    params = {name: dict(p) for name, p in ch.sweeper.params.items()}
    guide = AutoCaviGuide(ch.plan.structure, params, local=lambda a, k: ch.local_q(a, k)[:2])
    if check_draws:
        rows_args, rows_kwargs = ch.check_args

        def check():
            cs = ch.local_q(rows_args, rows_kwargs)[2]
            check_bound(model, guide, rows_args, rows_kwargs, ch.chunk_elbo(cs), check_draws,
                        seed, ch.coarsest)  # fmt: skip

        collective.agree(check)
    return params, guide


def _stops(value: torch.Tensor, history: list, tol: float) -> bool:
    """Whether the loop stops at this ELBO (not finite, or converged): then the sweep that
    computed it does not update the globals."""
    if not bool(torch.isfinite(value)):
        return True
    return bool(history) and abs(value - history[-1]) <= tol * abs(value)
