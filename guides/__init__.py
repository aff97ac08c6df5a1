"""Variational families matching :mod:`ppl_models`, one module per model, same names."""

from guides.conjugate import GaussianGuide as GaussianGuide
from guides.earthquake import EarthquakeGuide as EarthquakeGuide
from guides.expgauss import ExpGaussGuide as ExpGaussGuide
from guides.vae import VAEGuide as VAEGuide

__all__ = ["EarthquakeGuide", "ExpGaussGuide", "GaussianGuide", "VAEGuide"]
