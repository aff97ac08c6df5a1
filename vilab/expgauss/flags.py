"""``vilab expgauss``: SVI on the exponential-Gaussian model against its closed forms.

Model z ~ Expo(theta), x | z ~ N(z, 1); guide q(z) = Expo(phi). For one observation x > 0 the
ELBO has its joint maximiser in closed form, theta* = phi* = 2/x
(:func:`analytic.expgauss.joint_optimum`). SVI learns theta and phi together from a distant
start with each chosen estimator; the table compares where each run lands with the closed
form, scores it by the closed-form ELBO, and shows the exact log-evidence log p_theta(x) and
the gap log p - ELBO = KL(q || posterior) > 0. The last row is the exact maximum-likelihood
theta, so the bias of variational EM (theta* = 2/x against theta_ML) is visible.

Writes ``elbo_contour.png`` (the ELBO over (theta, phi) with every SVI path drawn on it, and
the closed-form ELBO and log p along each path) and ``summary.json``.
"""

from __future__ import annotations

import argparse

from vilab import diagnostics
from vilab.flags import add_jit_argument, add_output_arguments

__all__ = ["add_arguments"]

#: The estimators SVI is run with (``--estimator``; all by default).
ESTIMATOR_CHOICES = ["trace", "meanfield", "stl"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vilab expgauss`` (shared by ``examples/expgauss.py``)."""
    parser.add_argument(
        "--x",
        type=float,
        default=1.0,
        help="the observation; must be > 0, where the ELBO has a maximiser (default 1)",
    )
    fit = parser.add_argument_group("SVI")
    fit.add_argument(
        "--estimator",
        nargs="+",
        choices=ESTIMATOR_CHOICES,
        default=ESTIMATOR_CHOICES,
        help="gradient estimators to run, each from the same start: trace = Trace_ELBO "
        "(pathwise gradient through z = eps/phi); meanfield = TraceMeanField_ELBO (closed-form "
        "KL(Expo(phi) || Expo(theta))); stl = path derivative, the score term of q dropped "
        "(default: all three)",
    )
    fit.add_argument(
        "--init-theta", type=float, default=0.1, help="starting prior rate theta (0.1)"
    )
    fit.add_argument("--init-phi", type=float, default=20.0, help="starting rate phi of q (20)")
    fit.add_argument("--steps", type=int, default=2000, help="SVI steps (2000)")
    fit.add_argument(
        "--particles", type=int, default=256, help="Monte Carlo particles per step (256)"
    )
    add_jit_argument(
        fit,
        "Default: torchscript (about 3x faster steps with 256 particles), the whole step "
        "(--jit-backend step) from 5,000 steps on",
    )
    fit.add_argument("--lr", type=float, default=0.1, help="initial Adam learning rate (0.1)")
    fit.add_argument(
        "--lr-final",
        type=float,
        default=3e-4,
        help="learning rate at the last step; decays geometrically (3e-4)",
    )
    add_output_arguments(parser, "expgauss", "elbo_contour.png and summary.json", "SVI")
    diagnostics.add_arguments(parser)
