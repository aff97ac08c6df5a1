"""The path-derivative ("sticking the landing") estimator for every Pyro guide (Roeder, Wu &
Duvenaud 2017): the guide transform and the Pyro ELBO built on it. Depends on Pyro only."""

from inference.stl.elbo import StickingTheLanding as StickingTheLanding
from inference.stl.guide import path_derivative_guide as path_derivative_guide

__all__ = ["StickingTheLanding", "path_derivative_guide"]
