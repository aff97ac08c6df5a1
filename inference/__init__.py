"""The engine a Pyro user imports in their own scripts, one subpackage per subsystem:

- :mod:`inference.stl`: the path-derivative ("sticking the landing") estimator for any guide;
- :mod:`inference.jit`: compiled losses (TorchScript trace, TorchInductor);
- :mod:`inference.estimators`: every estimator by name (:func:`get_elbo`);
- :mod:`inference.svi`: the SVI loop and gradient variance;
- :mod:`inference.cavi`: automatic CAVI for conditionally conjugate models, in memory, over
  data in chunks, stochastic, and across processes;
- :mod:`inference.data`: catalogs (CSV, Parquet) and MNIST;
- :mod:`inference.distributed`: the collective of a ``torchrun`` job;
- :mod:`inference.diagnostics`: ArviZ diagnostics (imported on demand: it loads ArviZ);
- :mod:`inference.density`: self-normalised importance sampling and energy-based models.

Nothing here parses arguments, prints or imports the ``vilab`` application.
"""

from importlib.metadata import version as _version

from inference.cavi import auto_cavi as auto_cavi
from inference.cavi import stochastic_auto_cavi as stochastic_auto_cavi
from inference.data import load_catalog as load_catalog
from inference.data import load_mnist as load_mnist
from inference.estimators import get_elbo as get_elbo
from inference.stl import StickingTheLanding as StickingTheLanding
from inference.svi import FitResult as FitResult
from inference.svi import SVIStep as SVIStep
from inference.svi import fit_svi as fit_svi
from inference.svi import gradient_moments as gradient_moments

__version__ = _version("pyro-vi-lab")

__all__ = [
    "FitResult",
    "SVIStep",
    "StickingTheLanding",
    "auto_cavi",
    "fit_svi",
    "get_elbo",
    "gradient_moments",
    "load_catalog",
    "load_mnist",
    "stochastic_auto_cavi",
]
