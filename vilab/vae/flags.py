"""``vilab vae``: the Bernoulli VAE on MNIST, trained by Pyro SVI.

Model z ~ N(0, I), x | z ~ Bernoulli(logits = g(z)); guide q(z | x) = N(mu(x), diag sigma(x)^2);
the source's architecture by default (784-400-400-200, LeakyReLU 0.2; Adam 1e-3, batch 100).
Per epoch it reports the training loss and the test negative ELBO (nats per image, the latter
with the closed-form KL), and the seconds the epoch took; at the end, the importance-weighted
bound L_k on the test set (k = ``--iwae-samples``), an estimate of the test log-likelihood that
is >= the ELBO. Checkpoints after every epoch; ``--resume`` continues a run exactly.

Writes ``learning_curves.png``, ``reconstructions.png``, ``samples.png``, ``summary.json``
and the checkpoint (default ``checkpoint.pt``) into ``--out``.
"""

from __future__ import annotations

import argparse

from vilab import diagnostics
from vilab.flags import add_jit_argument, add_mnist_arguments, add_output_arguments

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vilab vae``."""
    data = parser.add_argument_group("data")
    add_mnist_arguments(data)
    data.add_argument(
        "--binarize",
        choices=["round", "sample"],
        default="round",
        help="round = pixel >= 0.5, fixed (the source's); sample = Bernoulli(pixel), redrawn "
        "every epoch (dynamic binarisation, the VAE literature's) (default round)",
    )
    data.add_argument("--train-size", type=int, help="use only the first N training images")
    data.add_argument("--test-size", type=int, help="use only the first M test images")
    net = parser.add_argument_group("model")
    net.add_argument("--latent-dim", type=int, default=200, help="latent dimension (200)")
    net.add_argument("--hidden-dim", type=int, default=400, help="hidden layer width (400)")
    net.add_argument("--num-hidden", type=int, default=2, help="hidden layers per network (2)")
    fit = parser.add_argument_group("training")
    fit.add_argument(
        "--estimator",
        choices=["trace", "meanfield", "stl"],
        default="meanfield",
        help="meanfield = TraceMeanField_ELBO, closed-form KL (the source's loss; default); "
        "trace = Trace_ELBO; stl = path derivative (sticking the landing)",
    )
    fit.add_argument("--epochs", type=int, default=15, help="epochs in total (15)")
    fit.add_argument("--batch-size", type=int, default=100, help="images per step (100)")
    fit.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    fit.add_argument("--particles", type=int, default=1, help="samples of z per image (1)")
    add_jit_argument(
        fit,
        "Default: --jit (1.3x faster steps, measured in benchmarks/svi_step.py)",
    )
    fit.add_argument(
        "--iwae-samples",
        type=int,
        default=100,
        help="k of the importance-weighted test log-likelihood (100)",
    )
    out = add_output_arguments(
        parser, "vae", "the plots, summary.json and the checkpoint",
        "weights, shuffling, binarisation and noise",
    )  # fmt: skip
    out.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="checkpoint written after every epoch (default OUT/checkpoint.pt)",
    )
    out.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint up to --epochs (same flags needed)",
    )
    diagnostics.add_arguments(parser, nuts=False)
