"""Closed-form truth: CAVI updates, ELBOs, KLs and samplers. Pure torch; never imports Pyro."""

from analytic import earthquake as earthquake
from analytic import gaussian as gaussian

__all__ = ["earthquake", "gaussian"]
