"""Closed-form truth: CAVI updates, ELBOs, KLs and samplers. Pure torch; never imports Pyro."""

from analytic import conjugate as conjugate
from analytic import earthquake as earthquake
from analytic import expgauss as expgauss
from analytic import gaussian as gaussian
from analytic import kl1d as kl1d
from analytic import reparam as reparam
from analytic import ring as ring

__all__ = ["conjugate", "earthquake", "expgauss", "gaussian", "kl1d", "reparam", "ring"]
