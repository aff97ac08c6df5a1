"""Variational fits as ArviZ ``InferenceData``: draws from any fitted guide
(:func:`to_inference_data`, through ``pyro.infer.Predictive``) with named dims, the observed
data and the SVI ELBO history (group ``vi_elbo``, dim ``step``); per-item PSIS results
(:func:`psis_inference_data`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from inference.diagnostics.common import arviz, is_latent, numpy_of

__all__ = ["psis_inference_data", "to_inference_data"]


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
) -> arviz().InferenceData:
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
        ``arviz().InferenceData`` with ``posterior`` (chain 1, draw S), and ``observed_data`` and
        ``vi_elbo`` when given.
    """
    pyro.set_rng_seed(seed)
    with torch.no_grad(), pyro.validation_enabled(False):
        single = poutine.trace(guide).get_trace(*args, **kwargs)  # the sites' natural shapes
        if sites is None:
            sites = [n for n, s in single.nodes.items() if is_latent(s)]
        predictive = pyro.infer.Predictive(
            model, guide=guide, num_samples=num_samples, return_sites=list(sites)
        )
        draws = predictive(*args, **kwargs)
    posterior = {
        name: numpy_of(draws[name]).reshape(1, num_samples, *single.nodes[name]["value"].shape)
        for name in sites
    }
    idata = arviz().from_dict(
        posterior=posterior,
        observed_data={k: numpy_of(v) for k, v in (observed_data or {}).items()} or None,
        dims=dims,
        coords=coords,
    )
    if elbo_history is not None:
        import xarray as xr

        history = numpy_of(elbo_history)
        idata.add_groups(
            {
                "vi_elbo": xr.Dataset(
                    {"elbo": ("step", history)}, coords={"step": np.arange(len(history))}
                )
            }
        )
    return idata


def psis_inference_data(log_weights, khat, ess) -> arviz().InferenceData:
    """Per-item PSIS results as InferenceData: group ``psis`` with ``khat`` and ``ess`` (dim
    ``item``) and the raw ``log_weights`` (dims ``item``, ``draw``)."""
    import xarray as xr

    lw = numpy_of(log_weights)
    ds = xr.Dataset(
        {
            "khat": ("item", np.asarray(khat)),
            "ess": ("item", np.asarray(ess)),
            "log_weights": (("item", "draw"), lw),
        }
    )  # xarray indexes each dim 0, 1, ... itself
    idata = arviz().InferenceData()
    idata.add_groups({"psis": ds})
    return idata
