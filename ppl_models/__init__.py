"""Pyro models: the generative stories, one module per case study, no inference code."""

from ppl_models import earthquake as earthquake
from ppl_models import expgauss as expgauss

__all__ = ["earthquake", "expgauss"]
