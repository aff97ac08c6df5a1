"""Everything that runs inference or talks to the outside world: the SVI loop, estimators,
data loading, the ``vilab`` command line."""

from inference.estimators import get_elbo as get_elbo
from inference.fit import FitResult as FitResult
from inference.fit import fit_svi as fit_svi

__all__ = ["FitResult", "fit_svi", "get_elbo"]
