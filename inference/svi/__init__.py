"""The SVI loop (:func:`fit_svi`, one step :class:`SVIStep`) and the gradient variance of any
estimator along it (:func:`gradient_moments`, :func:`variance_along_run`)."""

from inference.svi.fit import FitResult as FitResult
from inference.svi.fit import SVIStep as SVIStep
from inference.svi.fit import adam as adam
from inference.svi.fit import fit_svi as fit_svi
from inference.svi.gradvar import GradientMoments as GradientMoments
from inference.svi.gradvar import VarianceTrace as VarianceTrace
from inference.svi.gradvar import gradient_moments as gradient_moments
from inference.svi.gradvar import variance_along_run as variance_along_run

__all__ = [
    "FitResult",
    "GradientMoments",
    "SVIStep",
    "VarianceTrace",
    "adam",
    "fit_svi",
    "gradient_moments",
    "variance_along_run",
]
