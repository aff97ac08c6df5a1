"""Variational families matching :mod:`ppl_models`, one module per model, same names."""

from guides.earthquake import EarthquakeGuide as EarthquakeGuide
from guides.expgauss import ExpGaussGuide as ExpGaussGuide

__all__ = ["EarthquakeGuide", "ExpGaussGuide"]
