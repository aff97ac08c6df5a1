"""``vilab reparam``: the reparameterised samplers of :mod:`analytic.reparam` against torch's own.

Draws N samples each way and tests them:

- exponential: inverse CDF z = -log(1 - u)/rate vs ``torch.distributions.Exponential``, each by a
  one-sample Kolmogorov-Smirnov test against the exact CDF, and against each other (two-sample);
  and the pathwise gradient d E[z] / d rate (Monte Carlo, with its standard error) against the
  exact -1/rate^2;
- categorical: Gumbel-max vs ``torch.distributions.Categorical``, chi-square against probs;
- Gumbel-softmax at each temperature: chi-square of its argmax against probs (exact at every
  temperature), a two-sample KS test of each coordinate against torch's
  ``RelaxedOneHotCategorical`` (the smallest p-value of the K coordinates is shown), and the mean
  largest coordinate (-> 1 as the temperature -> 0: the samples become one-hot).

A p-value below 0.01 would be evidence of a wrong sampler. Writes ``reparam.png`` (direct vs
reparameterised histograms) and ``summary.json``.
"""

from __future__ import annotations

import argparse

from vilab.flags import add_output_arguments

__all__ = ["add_arguments"]


def _probs(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers 'p1,p2,...', got {text!r}") from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vilab reparam`` (shared by ``examples/reparam.py``)."""
    parser.add_argument(
        "--num-samples", type=int, default=100_000, help="draws per sampler (default 100000)"
    )
    parser.add_argument(
        "--rate", type=float, default=1.5, help="rate of the exponential (default 1.5)"
    )
    parser.add_argument(
        "--probs",
        type=_probs,
        default=[0.1, 0.2, 0.3, 0.4],
        metavar="P1,P2,...",
        help="categorical probabilities, each > 0, summing to 1 (default 0.1,0.2,0.3,0.4)",
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0.1, 0.5, 1.0, 5.0],
        help="Gumbel-softmax temperatures, each > 0 (default 0.1 0.5 1 5)",
    )
    add_output_arguments(
        parser, "reparam", "reparam.png and summary.json",
        "our samplers (torch's get seed + 1)", device_help="torch device to sample on (cpu)",
        quiet=False,
    )  # fmt: skip
