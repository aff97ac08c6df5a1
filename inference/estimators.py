"""Gradient estimators by name: one registry for every SVI fit in the project.

``get_elbo(name, **kwargs)`` returns a Pyro ELBO object usable as ``loss=`` in
:class:`pyro.infer.SVI`, or as ``elbo(model, guide)`` -> ``torch.nn.Module`` in
:func:`inference.fit.fit_svi`. Loss = -ELBO throughout.

Names:
    ``trace``      Pyro ``Trace_ELBO``: reparameterised where possible, score function otherwise
                   (Ranganath, Gerrish & Blei 2014; Kingma & Welling 2014).
    ``meanfield``  Pyro ``TraceMeanField_ELBO``: analytic KL(q || p) where registered
                   (e.g. Normal-Normal, Gamma-Gamma), Monte Carlo otherwise.
    ``enum``       Pyro ``TraceEnum_ELBO``: sums out discrete sites marked for enumeration
                   exactly (needs ``max_plate_nesting``).
"""

from __future__ import annotations

import pyro.infer

__all__ = ["ESTIMATORS", "get_elbo"]

ESTIMATORS = {
    "trace": pyro.infer.Trace_ELBO,
    "meanfield": pyro.infer.TraceMeanField_ELBO,
    "enum": pyro.infer.TraceEnum_ELBO,
}


def get_elbo(name: str, **kwargs) -> pyro.infer.ELBO:
    """Build the estimator called ``name`` with Pyro ELBO keyword arguments
    (``num_particles``, ``vectorize_particles``, ``max_plate_nesting``, ...).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {name!r}") from None
    return cls(**kwargs)
