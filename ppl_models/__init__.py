"""Pyro models: the generative stories, one module per case study, no inference code."""

from ppl_models import earthquake as earthquake

__all__ = ["earthquake"]
