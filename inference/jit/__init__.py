"""Compiled SVI losses and steps: any estimator of :mod:`inference.estimators` traced once per
argument signature (TorchScript) or compiled by TorchInductor, and the whole step -- loss,
gradient and Adam -- compiled as one Inductor call, each checked against the eager one before
use. Builds on :mod:`inference.stl`; never imports the estimator registry."""

from inference.jit.compiled import BACKENDS as BACKENDS
from inference.jit.compiled import CompiledELBO as CompiledELBO
from inference.jit.inductor import compile_loss as compile_loss
from inference.jit.inductor import compile_step as compile_step
from inference.jit.step import CompiledStep as CompiledStep

__all__ = ["BACKENDS", "CompiledELBO", "CompiledStep", "compile_loss", "compile_step"]
