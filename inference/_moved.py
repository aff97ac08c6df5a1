"""Old import paths of names that moved to the ``vilab`` application (issue #11), kept for one
release: each access warns with a ``DeprecationWarning`` naming the new path, then returns the
name from there. Removed in 0.3.

Nothing here imports :mod:`vilab` until a moved name is used, so ``import inference`` (and every
engine module) never loads the application.
"""

from __future__ import annotations

import importlib
import warnings

__all__ = ["MOVED", "forward"]

# old module -> (new module, the public names that moved with it)
MOVED = {
    "inference": ("vilab.vae.train", ("VAEConfig", "train_vae")),
    "inference.vae_train": (
        "vilab.vae.train",
        ("EpochRecord", "VAEConfig", "VAEResult", "build_vae", "train_vae"),
    ),
    "inference.vae_eval": (
        "vilab.vae.evaluate",
        ("bernoulli_log_lik", "importance_weighted_bound", "log_weights", "negative_elbo"),
    ),
    "inference.expgauss_svi": ("vilab.expgauss.svi", ("ExpGaussFit", "fit_expgauss")),
    "inference.data": (
        "inference.catalog",
        (
            "LATITUDE_NAMES",
            "LONGITUDE_NAMES",
            "MAGNITUDE_NAMES",
            "Catalog",
            "load_catalog",
            "parse_bbox",
        ),
    ),  # fmt: skip
}


def forward(old_module: str):
    """A module ``__getattr__`` for ``old_module`` (PEP 562): a moved name warns and is
    fetched from its new module; any other name raises ``AttributeError`` as usual."""
    new_module, names = MOVED[old_module]

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(
            f"{old_module}.{name} has moved to {new_module}.{name}; "
            f"the old path will be removed in pyro-vi-lab 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), name)

    return __getattr__
