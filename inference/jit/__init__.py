"""Compiled SVI losses: any estimator of :mod:`inference.estimators` traced once per argument
signature (TorchScript) or compiled by TorchInductor, checked against the eager loss before
use. Builds on :mod:`inference.stl`; never imports the estimator registry."""

from inference.jit.compiled import BACKENDS as BACKENDS
from inference.jit.compiled import CompiledELBO as CompiledELBO
from inference.jit.inductor import compile_loss as compile_loss

__all__ = ["BACKENDS", "CompiledELBO", "compile_loss"]
