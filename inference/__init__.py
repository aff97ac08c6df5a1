"""The engine a Pyro user imports in their own scripts: the estimators (:func:`get_elbo`, the
path-derivative :class:`StickingTheLanding`), the one SVI loop (:func:`fit_svi`,
:class:`SVIStep`), gradient variance (:func:`gradient_moments`) and the data readers
(:func:`load_catalog`, :func:`load_mnist`). ArviZ diagnostics are in
:mod:`inference.diagnostics` (imported on demand: it loads ArviZ).

Nothing here parses arguments, prints tables or imports the ``vilab`` application.
"""

from inference._moved import forward
from inference.catalog import load_catalog as load_catalog
from inference.estimators import StickingTheLanding as StickingTheLanding
from inference.estimators import get_elbo as get_elbo
from inference.fit import FitResult as FitResult
from inference.fit import SVIStep as SVIStep
from inference.fit import fit_svi as fit_svi
from inference.gradvar import gradient_moments as gradient_moments
from inference.mnist import load_mnist as load_mnist

__all__ = [
    "FitResult",
    "SVIStep",
    "StickingTheLanding",
    "fit_svi",
    "get_elbo",
    "gradient_moments",
    "load_catalog",
    "load_mnist",
]

__getattr__ = forward(__name__)  # inference.VAEConfig, inference.train_vae: moved to vilab.vae
