"""Pyro models: the generative stories, one module per case study, no inference code."""

from ppl_models import conjugate as conjugate
from ppl_models import earthquake as earthquake
from ppl_models import expgauss as expgauss
from ppl_models import vae as vae

__all__ = ["conjugate", "earthquake", "expgauss", "vae"]
