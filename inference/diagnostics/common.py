"""What every diagnostic shares: ArviZ, imported here (0.x; ArviZ 1.x changes this API, and
this is the only module that imports it) at the first diagnostic, not with the package,
trace sites as latents, tensors as NumPy arrays."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pyro.poutine.util import site_is_subsample

__all__ = ["arviz", "is_drawn", "is_latent", "numpy_of"]


def arviz():
    """The ``arviz`` module, imported at the first call (about 1 s: not when
    :mod:`inference.diagnostics` is imported)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ's notice of its 1.0 refactor
        import arviz as az
    return az


def is_latent(site) -> bool:
    """Whether a trace site is a latent draw of the model's: sampled, not observed, not a
    plate's subsample, and not an autoguide's auxiliary site (``infer={"is_auxiliary": True}``:
    AutoNormal's ``x_unconstrained``, AutoDiagonalNormal's ``_AutoDiagonalNormal_latent``, ...),
    whose value lives in the guide's own coordinates."""
    return is_drawn(site) and not site["infer"].get("is_auxiliary", False)


def is_drawn(site) -> bool:
    """Whether a trace site is a random draw of its program, auxiliary or not: its log-density
    is part of log q when the program is a guide."""
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def numpy_of(t) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a NumPy array."""
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
