"""``vilab gradvar``: how noisy is each gradient estimator, and where?

For the chosen model (``--model``; test beds described in :mod:`vilab.gradvar.cases`):

1. at two fixed parameter settings -- the *start* of an SVI run and the *optimum* (the exact
   posterior, closed-form or CAVI optimum, or a trained VAE) -- M = ``--draws`` independent
   gradient draws of each estimator give per-parameter mean, variance and signal-to-noise
   ratio. The table shows the total variance (sum over all parameter elements), its ratio to
   Trace_ELBO's, the SNR ||mean|| / sqrt(total variance) and the time per draw; summary.json
   has the same per parameter tensor;
2. along an SVI run from the start (trained with ``--train-estimator``), the total variance of
   every estimator at the current parameters every ``--every`` steps: ``gradvar.png`` (log
   scale), the picture of Roeder, Wu & Duvenaud (2017): the path-derivative (STL) estimator's
   variance falls towards zero as q approaches the exact posterior, Trace_ELBO's does not.

Writes ``gradvar.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse

from vilab.flags import add_jit_argument, add_mnist_arguments, add_output_arguments

__all__ = ["add_arguments"]

#: The test beds (``--model``), described in :mod:`vilab.gradvar.cases`.
CASES = ("conjugate", "expgauss", "earthquake", "vae")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vilab gradvar``."""
    parser.add_argument(
        "--model", choices=CASES, default="conjugate", help="test bed (default conjugate)"
    )
    parser.add_argument(
        "--estimator",
        nargs="+",
        help="estimators to compare (default: all that apply: trace, meanfield, stl; for "
        "earthquake trace, enum, stl)",
    )
    parser.add_argument(
        "--draws", type=int, default=100, help="gradient draws M per measurement (100)"
    )
    parser.add_argument(
        "--particles", type=int, default=1, help="Monte Carlo particles per draw (1)"
    )
    add_jit_argument(
        parser,
        "Default: --no-jit (every measurement builds its estimators "
        "afresh, so each would be traced again for about 100 draws)",
    )
    run_ = parser.add_argument_group("the SVI run")
    run_.add_argument(
        "--steps",
        type=int,
        help="SVI steps (default: the model's: conjugate 1500, expgauss 1000, earthquake 500, "
        "vae --train-steps)",
    )
    run_.add_argument("--every", type=int, default=50, help="measure every this many steps (50)")
    run_.add_argument(
        "--train-estimator",
        help="estimator that drives the run (default: stl for conjugate, enum for earthquake, "
        "trace otherwise)",
    )
    run_.add_argument("--lr", type=float, help="initial Adam learning rate (default: the model's)")
    run_.add_argument(
        "--lr-final",
        type=float,
        help="learning rate at the last step, decaying geometrically (default: the model's; "
        "constant for conjugate and vae)",
    )
    vae = parser.add_argument_group("vae")
    add_mnist_arguments(vae)
    vae.add_argument("--batch-size", type=int, default=100, help="images in the minibatch (100)")
    vae.add_argument("--latent-dim", type=int, default=200, help="latent dimension (200)")
    vae.add_argument("--hidden-dim", type=int, default=400, help="hidden width (400)")
    vae.add_argument(
        "--train-steps",
        type=int,
        default=300,
        help="Trace_ELBO steps on the batch that define the 'optimum' (300)",
    )
    add_output_arguments(
        parser, "gradvar", "gradvar.png and summary.json", "data, draws and SVI",
        device_help="torch device for the vae (cpu)",
    )  # fmt: skip
