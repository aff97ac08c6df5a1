r"""NUTS as the reference posterior of a variational fit: :func:`compare_with_nuts`.

Pyro's NUTS (Hoffman & Gelman 2014) runs on the same model, discrete sites marginalised by
enumeration, chains one after another; both posteriors become InferenceData, and each scalar
parameter gets its mean and sd under each, the sd ratio VI / NUTS, the overlap of the central
90% intervals (length of the intersection / length of the union: 1 = identical, 0 = disjoint),
and NUTS's own r-hat and bulk ESS from ``arviz().summary``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyro

from inference.diagnostics.common import arviz, numpy_of

__all__ = [
    "ESS_MIN",
    "RHAT_MAX",
    "NutsComparison",
    "NutsConvergenceWarning",
    "compare_with_nuts",
    "interval_overlap",
]

# NUTS's own verdict on its chains (Vehtari, Gelman, Simpson, Carpenter & Burkner 2021,
# "Rank-normalization, folding, and localization", Sec. 4-5: rank-normalised r-hat below 1.01,
# bulk ESS of at least 400 before a posterior summary is trusted)
RHAT_MAX = 1.01
ESS_MIN = 400


class NutsConvergenceWarning(UserWarning):
    """NUTS's chains fail its own checks (r-hat above ``RHAT_MAX`` or bulk ESS below
    ``ESS_MIN``): the reference the VI fit is compared with is not yet trustworthy."""


class NutsComparison(NamedTuple):
    """Result of :func:`compare_with_nuts`.

    Attributes:
        rows: one dict per scalar parameter: ``parameter``, ``vi_mean``, ``vi_sd``,
            ``nuts_mean``, ``nuts_sd``, ``sd_ratio`` (VI / NUTS), ``overlap90`` (intersection /
            union of the central 90% intervals), ``r_hat``, ``ess_bulk`` (NUTS's).
        vi, nuts: the two posteriors as InferenceData.
        summary: ``arviz().summary`` of the NUTS posterior (a pandas DataFrame).
        seconds: NUTS's wall-clock time, all chains.
    """

    rows: list[dict]
    vi: arviz().InferenceData
    nuts: arviz().InferenceData
    summary: object
    seconds: float


def interval_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of the central 90% intervals [q05, q95] of two samples: the length of their
    intersection over that of their union (1 = identical, 0 = disjoint; 1 when both are the
    same point)."""
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
    vi: arviz().InferenceData,
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

    Warns:
        NutsConvergenceWarning: where NUTS's chains fail its own checks (r-hat > 1.01, bulk
            ESS < 400), naming the worst parameter.
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
            chains[name].append(numpy_of(samples[name]))
    seconds = time.perf_counter() - start
    nuts = arviz().from_dict(
        posterior={name: np.stack(chains[name]) for name in names}, dims=dims, coords=coords
    )
    rhat, ess = arviz().rhat(nuts), arviz().ess(nuts, method="bulk")
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
                "overlap90": interval_overlap(v, n),
                "r_hat": float(r[j]), "ess_bulk": float(e[j]),
            })  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        summary = arviz().summary(nuts)
    _warn_unless_converged(rows, num_chains)
    return NutsComparison(rows, vi, nuts, summary, seconds)


def _warn_unless_converged(rows: list[dict], num_chains: int) -> None:
    """One :class:`NutsConvergenceWarning` naming the worst r-hat and the lowest bulk ESS, where
    either fails (with one chain r-hat is not defined and only the ESS is judged)."""
    problems = []
    worst = max(rows, key=lambda r: r["r_hat"] if r["r_hat"] == r["r_hat"] else -1.0)
    if num_chains > 1 and not worst["r_hat"] <= RHAT_MAX:
        problems.append(f"r-hat {worst['r_hat']:.3f} > {RHAT_MAX} for {worst['parameter']}")
    least = min(rows, key=lambda r: r["ess_bulk"])
    if not least["ess_bulk"] >= ESS_MIN:
        problems.append(f"bulk ESS {least['ess_bulk']:.0f} < {ESS_MIN} for {least['parameter']}")
    if problems:
        warnings.warn(
            f"NUTS may not have converged ({'; '.join(problems)}): run more warm-up steps, draws "
            "or chains before trusting the comparison",
            NutsConvergenceWarning,
            stacklevel=3,
        )
