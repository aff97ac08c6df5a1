"""Deprecated: moved to :mod:`vilab.vae.evaluate` (removed in 0.3); see :mod:`inference._moved`."""

from inference._moved import forward

__getattr__ = forward(__name__)
