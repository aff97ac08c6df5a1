"""Everything that runs inference or talks to the outside world: the SVI loop, estimators,
gradient variance, VAE training, data loading, the ``vilab`` command line. ArviZ diagnostics
are in :mod:`inference.diagnostics` (imported on demand: it loads ArviZ)."""

from inference.estimators import StickingTheLanding as StickingTheLanding
from inference.estimators import get_elbo as get_elbo
from inference.fit import FitResult as FitResult
from inference.fit import SVIStep as SVIStep
from inference.fit import fit_svi as fit_svi
from inference.gradvar import gradient_moments as gradient_moments
from inference.mnist import load_mnist as load_mnist
from inference.vae_train import VAEConfig as VAEConfig
from inference.vae_train import train_vae as train_vae

__all__ = [
    "FitResult",
    "SVIStep",
    "StickingTheLanding",
    "VAEConfig",
    "fit_svi",
    "get_elbo",
    "gradient_moments",
    "load_mnist",
    "train_vae",
]
