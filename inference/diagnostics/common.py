"""What every diagnostic shares: ArviZ, imported here once (0.x; ArviZ 1.x changes this API, and
this is the only module that imports it), trace sites as latents, tensors as NumPy arrays."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pyro.poutine.util import site_is_subsample

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # ArviZ's notice of its 1.0 refactor
    import arviz as az

__all__ = ["az", "is_latent", "numpy_of"]


def is_latent(site) -> bool:
    """Whether a trace site is a latent draw (sampled, not observed, not a plate's subsample)."""
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def numpy_of(t) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a NumPy array."""
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
