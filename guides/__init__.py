"""Variational families matching :mod:`ppl_models`, one module per model, same names."""

from guides.earthquake import EarthquakeGuide as EarthquakeGuide

__all__ = ["EarthquakeGuide"]
