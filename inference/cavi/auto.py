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

import functools
import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from inference.cavi.analysis import Assignment, Latent, ModelStructure, analyse, quiet_wishart
from inference.cavi.sweeps import Sweeper

__all__ = ["AutoCaviGuide", "AutoCaviResult", "auto_cavi", "monte_carlo_elbo"]


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
        extra = latent.event_dim - latent.family.row_dims
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
                scale = s.assignments[name].scale if name in s.assignments else 1.0
                if scale != 1.0:  # as the model scales this site's log p(z), so its log q(z)
                    stack.enter_context(poutine.scale(scale=scale))
                out[name] = pyro.sample(name, self.distribution(name))
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


def _check_bound(model, guide, args, kwargs, elbo, num_draws: int, seed: int, dtype) -> None:
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


def _check_settings(model, num_steps, tol, seed, init, check_draws) -> None:
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


def _default_params(latent: Latent) -> dict:
    """A start around the seeded prior draw d: Normal(d, 1), MultivariateNormal(d, I),
    Gamma with mean d and shape 1, InverseGamma(1, d), Beta and Dirichlet with mean d and total
    concentration 2 (resp. D), Wishart with mean d and D + 2 degrees of freedom."""
    d = latent.draw
    name = latent.family.name
    if name == "Normal":
        return {"loc": d.clone(), "scale": torch.ones_like(d)}
    if name == "MultivariateNormal":
        eye = torch.eye(d.shape[-1], dtype=d.dtype, device=d.device)
        return {"loc": d.clone(), "covariance_matrix": eye.expand(d.shape + d.shape[-1:]).clone()}
    if name == "MultivariateNormal" and latent.prior == "Normal":  # a vector in a matrix product
        return {"loc": d.clone(), "covariance_matrix": torch.eye(d.shape[-1], dtype=d.dtype,
                                                                 device=d.device)}  # fmt: skip
    if name == "Gamma":
        return {"concentration": torch.ones_like(d), "rate": 1.0 / d}
    if name == "InverseGamma":  # E[1 / v] = 1 / d
        return {"concentration": torch.ones_like(d), "rate": d.clone()}
    if name == "Beta":
        return {"concentration1": 2.0 * d, "concentration0": 2.0 * (1.0 - d)}
    if name == "Wishart":  # mean df W = d
        df = torch.full(d.shape[:-2], d.shape[-1] + 2.0, dtype=d.dtype, device=d.device)
        return {"df": df, "covariance_matrix": d / df[..., None, None]}
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
        want = _default_params(latent)[key].shape
        try:
            value = value.expand(want).clone()
        except RuntimeError:
            raise ValueError(
                f"init[{latent.name!r}][{key!r}] must broadcast to shape {tuple(want)}, got "
                f"{tuple(value.shape)}"
            ) from None
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be finite")
        low = d.shape[-1] - 1.0 if key == "df" else 0.0  # a Wishart's df > D - 1
        if key != "loc" and key != "covariance_matrix" and not bool((value > low).all()):
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be > {low:g}, got "
                             f"{value.min()}")  # fmt: skip
        out[key] = value
    if "covariance_matrix" in out:
        try:
            torch.linalg.cholesky(out["covariance_matrix"])
        except RuntimeError:
            raise ValueError(f"init[{latent.name!r}]['covariance_matrix'] must be positive "
                             "definite") from None  # fmt: skip
    return out


def _working_dtypes(structure) -> tuple[torch.Tensor, torch.dtype]:
    """A scalar of the dtype and device every update runs in: the promotion of the latents'
    draws and the observations (float64 data under float32 priors written as ``Normal(0.,
    10.)`` is float64, as Pyro's own log densities promote it; float64 if nothing is a float);
    and the coarsest float dtype among them, whose rounding Pyro's own ELBO carries."""
    found = [latent.draw for latent in structure.latents.values()]
    found += [a.value for a in structure.assignments.values()]
    for factor in structure.factors:
        found += list(_tensors(factor.value_stats))
    floats = [t.dtype for t in found if t.is_floating_point()] or [torch.float64]
    dtype = functools.reduce(torch.promote_types, floats)
    coarsest = max(floats, key=lambda d: torch.finfo(d).eps)
    return torch.zeros((), dtype=dtype, device=found[0].device if found else None), coarsest


def _tensors(tree):
    """The tensors of a nest of dicts, lists and tuples."""
    if torch.is_tensor(tree):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors(value)


def _checked_probs(a: Assignment, given, like: torch.Tensor) -> torch.Tensor:
    """The user's q(Z) for an enumerated site, ``{"probs": p}`` with p of shape batch_shape +
    (K,) (a Categorical) or batch_shape (a Bernoulli's P(Z = 1)), in the enumerated layout;
    or a ValueError naming the site."""
    K = a.support.numel()
    if not isinstance(given, dict) or set(given) != {"probs"}:
        raise ValueError(f"init[{a.name!r}] must be a dict with exactly the key ['probs'] "
                         f"({a.family}), got {given!r:.200}")  # fmt: skip
    try:
        p = torch.as_tensor(given["probs"], dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"init[{a.name!r}]['probs'] must be numbers: {err}") from None
    if a.family == "Bernoulli":
        p = torch.stack([1.0 - p, p], -1)
    want = tuple(a.batch_shape) + (K,)
    if tuple(p.shape) != want:
        shown, got = (want[:-1], p.shape[:-1]) if a.family == "Bernoulli" else (want, p.shape)
        raise ValueError(f"init[{a.name!r}]['probs'] must have shape {shown}, got "
                         f"{tuple(got)}")  # fmt: skip
    total = p.sum(-1)
    if not (bool(torch.isfinite(p).all()) and bool((p >= 0).all())
            and bool(((total - 1).abs() <= 1e-6).all())):  # fmt: skip
        raise ValueError(f"init[{a.name!r}]['probs'] must be probabilities >= 0 summing to 1 "
                         "over the last dim")  # fmt: skip
    moved = torch.movedim(torch.empty(a.layout), a.enum_dim, -1).shape
    return torch.movedim(p.reshape(moved), -1, a.enum_dim).contiguous()


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
    check_draws: int = 100,
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
            disagreement beyond 6 standard errors raises; 0 skips the check.

    Returns:
        :class:`AutoCaviResult`; its ``elbo_history`` holds the exact ELBO after every sweep.

    Raises:
        ValueError: naming the site and what would make it conjugate, before any sweep; or,
            after the sweeps, if the check disagrees (the model is not what the analysis saw).
    """
    _check_settings(model, num_steps, tol, seed, init, check_draws)
    start = time.perf_counter()
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
    like, coarsest = _working_dtypes(structure)
    sweeper = Sweeper(structure, like)
    for name, latent in structure.latents.items():
        given = (init or {}).get(name)
        params = _default_params(latent) if given is None else _checked_init(latent, given)
        sweeper.set_params(name, params)
    gen = torch.Generator().manual_seed(seed)
    for a in structure.assignments.values():
        given = (init or {}).get(a.name)
        if given is None:
            r = _random_probs(a, gen, sweeper.like)
        else:
            r = _checked_probs(a, given, sweeper.like)
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
        _check_bound(model, guide, args, kwargs, history[-1], check_draws, seed, coarsest)
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
