r"""ArviZ diagnostics for variational fits: InferenceData, PSIS k-hat, and NUTS as the reference.

This is the only module that imports ArviZ (0.x; ArviZ 1.x changes this API, and moving should
touch this file alone).

- :func:`to_inference_data`: draws from any fitted guide (``pyro.infer.Predictive``) as
  ``az.InferenceData`` -- ``posterior`` with named dims and coords, ``observed_data``, and the
  SVI ELBO history in a group of its own, ``vi_elbo`` (dim ``step``).
- :func:`psis_check` / :func:`psis_from_log_weights`: Pareto-smoothed importance sampling of
  the weights w_s = p(x, z_s) / q(z_s), z_s ~ q (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but
  Did It Work?: Evaluating Variational Inference", Sec. 3). The fitted generalised-Pareto shape
  k-hat of the weights' tail says whether q can be trusted:

      k-hat < 0.5         good: q is close to the posterior; importance sampling corrects it
      0.5 <= k-hat < 0.7  usable: the PSIS-corrected estimates are reliable, plain VI ones less so
      k-hat >= 0.7        not trustworthy: q misses mass the posterior has (too narrow tails)

  with the effective sample size 1 / sum_s w~_s^2 of the normalised smoothed weights, and the
  PSIS-corrected posterior means sum_s w~_s z_s.
- :func:`compare_with_nuts`: Pyro's NUTS on the same model (discrete sites marginalised by
  enumeration), chains run one after another, both posteriors as InferenceData, and per scalar
  parameter: mean and sd under each, the sd ratio VI / NUTS, the overlap of the central 90%
  intervals (length of the intersection / length of the union: 1 = identical, 0 = disjoint),
  and NUTS's own r-hat and bulk ESS from ``az.summary``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # ArviZ's notice of its 1.0 refactor
    import arviz as az

__all__ = [
    "NutsComparison",
    "PsisResult",
    "compare_with_nuts",
    "forest_plot",
    "guide_log_weights",
    "khat_plot",
    "psis_inference_data",
    "psis_check",
    "psis_from_log_weights",
    "standardise",
    "to_inference_data",
    "verdict",
]

GOOD_KHAT, USABLE_KHAT = 0.5, 0.7


def verdict(khat: float) -> str:
    """The words for a k-hat value (Yao et al. 2018, Sec. 3; thresholds 0.5 and 0.7)."""
    if not math.isfinite(khat):
        return "undefined (the log weights are not finite)"
    if khat < GOOD_KHAT:
        return "good: q is close to the posterior, and importance sampling corrects what is left"
    if khat < USABLE_KHAT:
        return "usable: PSIS-corrected estimates are reliable; raw VI estimates less so"
    return "not trustworthy: q misses posterior mass (its tails are too light); do not use it"


def _is_latent(site) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def to_inference_data(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    sites: Sequence[str] | None = None,
    dims: dict[str, list[str]] | None = None,
    coords: dict[str, list] | None = None,
    elbo_history=None,
    observed_data: dict | None = None,
    seed: int = 0,
    **kwargs,
) -> az.InferenceData:
    """Draws from a fitted guide as InferenceData.

    Args:
        model, guide: the fitted pair; ``*args, **kwargs`` are their arguments.
        num_samples: draws S (one chain). sites: guide sites to keep (default: every latent
            site the guide samples). dims, coords: ArviZ dims per site (after chain, draw) and
            their coordinates, e.g. ``{"mu": ["cluster", "coord"]}``.
        elbo_history: (T,) ELBO per SVI step, stored in the group ``vi_elbo`` (dim ``step``).
        observed_data: name -> array, stored in ``observed_data``.
        seed: for the draws.

    Returns:
        ``az.InferenceData`` with ``posterior`` (chain 1, draw S), and ``observed_data`` and
        ``vi_elbo`` when given.
    """
    pyro.set_rng_seed(seed)
    with torch.no_grad(), pyro.validation_enabled(False):
        single = poutine.trace(guide).get_trace(*args, **kwargs)  # the sites' natural shapes
        if sites is None:
            sites = [n for n, s in single.nodes.items() if _is_latent(s)]
        predictive = pyro.infer.Predictive(
            model, guide=guide, num_samples=num_samples, return_sites=list(sites)
        )
        draws = predictive(*args, **kwargs)
    posterior = {
        name: _numpy(draws[name]).reshape(1, num_samples, *single.nodes[name]["value"].shape)
        for name in sites
    }
    idata = az.from_dict(
        posterior=posterior,
        observed_data={k: _numpy(v) for k, v in (observed_data or {}).items()} or None,
        dims=dims,
        coords=coords,
    )
    if elbo_history is not None:
        import xarray as xr

        history = _numpy(elbo_history)
        idata.add_groups(
            {
                "vi_elbo": xr.Dataset(
                    {"elbo": ("step", history)}, coords={"step": np.arange(len(history))}
                )
            }
        )
    return idata


class PsisResult(NamedTuple):
    """Result of :func:`psis_check`.

    Attributes:
        khat: Pareto k-hat (a float; or an array, one per row of the log weights).
        ess: effective sample size of the smoothed weights (same shape as khat).
        num_samples: S. verdict: :func:`verdict` of ``khat`` (of the largest, for arrays).
        means: site -> PSIS-corrected posterior mean. raw_means: site -> plain mean under q.
        log_weights: the raw log weights log p(x, z_s) - log q(z_s), shape (S,).
    """

    khat: float | np.ndarray
    ess: float | np.ndarray
    num_samples: int
    verdict: str
    means: dict[str, np.ndarray]
    raw_means: dict[str, np.ndarray]
    log_weights: np.ndarray


def psis_from_log_weights(log_weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised smoothed log weights, k-hat, ESS) from raw log weights (..., S)."""
    lw = _numpy(log_weights).astype(np.float64)
    with warnings.catch_warnings():
        # ArviZ warns when k-hat is large; the verdict says so in words instead.
        warnings.simplefilter("ignore", UserWarning)
        smoothed, khat = az.psislw(lw)
    weights = np.exp(smoothed)
    ess = 1.0 / np.sum(weights**2, axis=-1)
    return smoothed, np.asarray(khat), ess


def _plate_nesting(model: Callable, guide_trace, args, kwargs) -> int:
    """The deepest plate dim of the guide's trace and of the model replayed on it (0 if none)."""
    model_trace = poutine.trace(poutine.replay(model, guide_trace)).get_trace(*args, **kwargs)
    dims = [
        frame.dim
        for trace in (guide_trace, model_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims, default=0)


def guide_log_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int,
    max_plate_nesting: int | None = None,
    sites: Sequence[str] | None = None,
    log_joint_fn: Callable[[dict], torch.Tensor] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Vectorised draws z_s ~ q and their log weights log p(x, z_s) - log q(z_s).

    The guide and the model run once each inside a particle plate at dim
    ``-(max_plate_nesting + 1)``; log q sums the guide's ``sites`` (default: all of its latent
    sites), log p the model's sample sites (each times its ``scale``, e.g. N/B under a
    subsampling plate) replayed on those draws -- or ``log_joint_fn(draws)`` when given (e.g.
    the earthquake model with Z summed out exactly). ``max_plate_nesting=None`` reads it from
    one unvectorised run of the guide and the model (the deepest plate dim, as Pyro's ELBOs
    guess it).

    Returns:
        (log_weights (S,), draws: site -> (S, *site shape)).
    """

    def vectorised(fn):
        def wrapped(*a, **k):
            with pyro.plate("psis_particles", num_samples, dim=dim):
                return fn(*a, **k)

        return wrapped

    def per_particle(site) -> torch.Tensor:
        """log-density of a site, scaled, summed over everything but the particle dim: (S,)."""
        lp = site["fn"].log_prob(site["value"]) * site["scale"]
        return lp.reshape(num_samples, -1).sum(-1)

    with torch.no_grad(), pyro.validation_enabled(False):
        single = poutine.trace(guide).get_trace(*args, **kwargs)  # the sites' natural shapes
        if max_plate_nesting is None:
            max_plate_nesting = _plate_nesting(model, single, args, kwargs)
        dim = -(max_plate_nesting + 1)
        guide_trace = poutine.trace(vectorised(guide)).get_trace(*args, **kwargs)
        latent = [n for n, s in single.nodes.items() if _is_latent(s)]
        keep = list(sites) if sites is not None else latent
        log_q = sum(per_particle(guide_trace.nodes[n]) for n in keep)
        # (S, *natural shape): drops the size-1 placeholders of plates the site is not in
        draws = {
            n: guide_trace.nodes[n]["value"].reshape(num_samples, *single.nodes[n]["value"].shape)
            for n in keep
        }
        if log_joint_fn is not None:
            log_p = log_joint_fn(draws)
        else:
            model_trace = poutine.trace(poutine.replay(vectorised(model), guide_trace)).get_trace(
                *args, **kwargs
            )
            log_p = sum(
                per_particle(s)
                for s in model_trace.nodes.values()
                if s["type"] == "sample" and not site_is_subsample(s)
            )
    return log_p - log_q, draws


def psis_check(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    max_plate_nesting: int | None = None,
    sites: Sequence[str] | None = None,
    log_joint_fn: Callable[[dict], torch.Tensor] | None = None,
    seed: int = 0,
    **kwargs,
) -> PsisResult:
    """Is q good enough? PSIS k-hat, ESS and PSIS-corrected means (module docstring).

    Args: as :func:`guide_log_weights`; ``seed`` for the draws.
    """
    pyro.set_rng_seed(seed)
    log_w, draws = guide_log_weights(
        model, guide, *args, num_samples=num_samples, max_plate_nesting=max_plate_nesting,
        sites=sites, log_joint_fn=log_joint_fn, **kwargs,
    )  # fmt: skip
    smoothed, khat, ess = psis_from_log_weights(log_w)
    weights = np.exp(smoothed)
    means, raw = {}, {}
    for name, value in draws.items():
        v = _numpy(value).reshape(num_samples, -1)
        shape = value.shape[1:]
        means[name] = (weights[:, None] * v).sum(0).reshape(shape)
        raw[name] = v.mean(0).reshape(shape)
    k = float(khat)
    return PsisResult(k, float(ess), num_samples, verdict(k), means, raw, _numpy(log_w))


class NutsComparison(NamedTuple):
    """Result of :func:`compare_with_nuts`.

    Attributes:
        rows: one dict per scalar parameter: ``parameter``, ``vi_mean``, ``vi_sd``,
            ``nuts_mean``, ``nuts_sd``, ``sd_ratio`` (VI / NUTS), ``overlap90`` (intersection /
            union of the central 90% intervals), ``r_hat``, ``ess_bulk`` (NUTS's).
        vi, nuts: the two posteriors as InferenceData.
        summary: ``az.summary`` of the NUTS posterior (a pandas DataFrame).
        seconds: NUTS's wall-clock time, all chains.
    """

    rows: list[dict]
    vi: az.InferenceData
    nuts: az.InferenceData
    summary: object
    seconds: float


def _interval_overlap(a: np.ndarray, b: np.ndarray) -> float:
    lo_a, hi_a = np.quantile(a, [0.05, 0.95])
    lo_b, hi_b = np.quantile(b, [0.05, 0.95])
    inter = max(0.0, min(hi_a, hi_b) - max(lo_a, lo_b))
    union = max(hi_a, hi_b) - min(lo_a, lo_b)
    return inter / union if union > 0 else 1.0


def _flat(da) -> tuple[np.ndarray, list[str]]:
    """(chain * draw, P) values and P labels like ``mu[0, lon]`` of a posterior variable."""
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    values = da.transpose("chain", "draw", *extra).values
    values = values.reshape(values.shape[0] * values.shape[1], -1)
    labels = []
    for index in np.ndindex(*[da.sizes[d] for d in extra]):
        parts = [str(da.coords[d].values[i]) for d, i in zip(extra, index)]
        labels.append(f"{da.name}[{', '.join(parts)}]" if parts else str(da.name))
    return values, labels


def compare_with_nuts(
    model: Callable,
    vi: az.InferenceData,
    *args,
    num_samples: int = 300,
    warmup_steps: int = 300,
    num_chains: int = 2,
    max_plate_nesting: int = 1,
    init_values: dict | None = None,
    dims: dict | None = None,
    coords: dict | None = None,
    seed: int = 0,
    progress: bool = False,
    **kwargs,
) -> NutsComparison:
    """Run NUTS on ``model(*args, **kwargs)`` and compare its posterior with ``vi``'s.

    Args:
        model: the Pyro model. Its discrete sites, if any, are summed out by enumeration: Pyro's
            NUTS marks them itself (``config_enumerate`` in ``pyro.infer.mcmc.util``), within
            ``max_plate_nesting`` plates.
        vi: InferenceData of the VI posterior (:func:`to_inference_data`); its variables are the
            ones compared.
        num_samples, warmup_steps: per chain. num_chains: run one after another, each from
            ``init_values`` (e.g. the VI means, which keeps every chain in the VI's labelling of
            a mixture) or Pyro's default init. seed: chain c uses seed + c.
        dims, coords: as for :func:`to_inference_data`.

    Returns:
        :class:`NutsComparison`.
    """
    from pyro.infer import MCMC, NUTS
    from pyro.infer.autoguide.initialization import init_to_sample, init_to_value

    names = list(vi.posterior.data_vars)
    chains = {name: [] for name in names}
    start = time.perf_counter()
    for c in range(num_chains):
        pyro.set_rng_seed(seed + c)
        init = init_to_value(values=init_values) if init_values else init_to_sample
        kernel = NUTS(model, max_plate_nesting=max_plate_nesting, init_strategy=init)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                    disable_progbar=not progress)  # fmt: skip
        mcmc.run(*args, **kwargs)
        samples = mcmc.get_samples()
        for name in names:
            chains[name].append(_numpy(samples[name]))
    seconds = time.perf_counter() - start
    nuts = az.from_dict(
        posterior={name: np.stack(chains[name]) for name in names}, dims=dims, coords=coords
    )
    rhat, ess = az.rhat(nuts), az.ess(nuts, method="bulk")
    rows = []
    for name in names:
        vi_values, labels = _flat(vi.posterior[name])
        nuts_values, _ = _flat(nuts.posterior[name])
        r = np.asarray(rhat[name].values).reshape(-1)
        e = np.asarray(ess[name].values).reshape(-1)
        for j, label in enumerate(labels):
            v, n = vi_values[:, j], nuts_values[:, j]
            rows.append({
                "parameter": label,
                "vi_mean": float(v.mean()), "vi_sd": float(v.std(ddof=1)),
                "nuts_mean": float(n.mean()), "nuts_sd": float(n.std(ddof=1)),
                "sd_ratio": float(v.std(ddof=1) / n.std(ddof=1)),
                "overlap90": _interval_overlap(v, n),
                "r_hat": float(r[j]), "ess_bulk": float(e[j]),
            })  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        summary = az.summary(nuts)
    return NutsComparison(rows, vi, nuts, summary, seconds)


def _num_scalars(idata) -> int:  # pragma: no mutate block (sizes the forest plot)
    return sum(int(v.size // (v.sizes["chain"] * v.sizes["draw"]))
               for v in idata.posterior.data_vars.values())  # fmt: skip


def standardise(posteriors: dict[str, az.InferenceData], reference: str) -> dict:
    """Each posterior of ``posteriors`` as (value - m) / s, m and s the mean and sd over chains
    and draws of the ``reference`` posterior, parameter by parameter: the reference then has
    mean 0 and sd 1 in every coordinate, and another's mean is its shift in reference sds and
    its sd the ratio of the two sds. Returns a dict of InferenceData (posterior group only)."""
    ref = posteriors[reference].posterior
    mean, sd = ref.mean(("chain", "draw")), ref.std(("chain", "draw"))
    return {
        name: az.InferenceData(posterior=(idata.posterior - mean) / sd)
        for name, idata in posteriors.items()
    }


# Plotting below: checked by the files it writes, not by values, so mutation testing skips it.
def forest_plot(posteriors, reference=None, title=""):  # pragma: no mutate block
    """``az.plot_forest`` of several posteriors (e.g. VI and NUTS), central 90% intervals; returns
    the matplotlib ``Figure`` (headless backend; the caller saves and closes it).

    ``posteriors``: name -> InferenceData. With ``reference`` (one of the names), every
    parameter is put on one axis by :func:`standardise`: the reference's interval is about
    +-1.64 and another's shows its shift and its sd ratio.
    """
    import matplotlib

    matplotlib.use("Agg")

    if reference is not None:
        posteriors = standardise(posteriors, reference)
    axes = az.plot_forest(
        list(posteriors.values()),
        model_names=list(posteriors),
        combined=True,
        hdi_prob=0.9,
        figsize=(7, 1.2 + 0.4 * _num_scalars(next(iter(posteriors.values())))),
    )
    ax = np.ravel(axes)[0]
    fig = ax.figure
    if reference is not None:
        ax.set_xlabel(f"(value - {reference} mean) / {reference} sd")
        ax.axvline(0.0, color="0.6", lw=0.8)
    if title:
        fig.suptitle(title)
    return fig


def psis_inference_data(log_weights, khat, ess) -> az.InferenceData:
    """Per-item PSIS results as InferenceData: group ``psis`` with ``khat`` and ``ess`` (dim
    ``item``) and the raw ``log_weights`` (dims ``item``, ``draw``)."""
    import xarray as xr

    lw = _numpy(log_weights)
    ds = xr.Dataset(
        {
            "khat": ("item", np.asarray(khat)),
            "ess": ("item", np.asarray(ess)),
            "log_weights": (("item", "draw"), lw),
        }
    )  # xarray indexes each dim 0, 1, ... itself
    idata = az.InferenceData()
    idata.add_groups({"psis": ds})
    return idata


def khat_plot(khat):  # pragma: no mutate block
    """Histogram of per-item k-hat with the 0.5 and 0.7 thresholds; returns the matplotlib
    ``Figure`` (headless backend; the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    khat = np.asarray(khat)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(khat, bins=40, color="0.5")
    for value, label in (
        (GOOD_KHAT, "0.5: good below"),
        (USABLE_KHAT, "0.7: not trustworthy above"),
    ):
        ax.axvline(value, color="k", ls="--", lw=1)
        ax.text(value, ax.get_ylim()[1] * 0.95, " " + label, fontsize=8, va="top")
    ax.set(xlabel="PSIS k-hat", ylabel="test images", title="Did the VAE's q(z | x) work?")
    fig.tight_layout()
    return fig
