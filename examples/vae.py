"""Bernoulli VAE on MNIST: Pyro SVI with three gradient estimators, side by side.

Model: z ~ N(0, I_200), x | z ~ Bernoulli(logits = g(z)) over the 784 pixels; guide
q(z | x) = N(mu(x), diag sigma(x)^2); both networks 784-400-400 with LeakyReLU(0.2), as in the
source notebook. The same initial weights are trained for a few epochs with Trace_ELBO,
TraceMeanField_ELBO (closed-form KL, the source's loss) and the path-derivative estimator
(STL), and each is scored on the test set by the negative ELBO and by the importance-weighted
bound L_100 (an estimate of log p(x), above the ELBO).

For the full 15-epoch runs, checkpoints and image grids use the command line: ``vilab vae``.

References:
    Kingma & Welling (2014), Auto-Encoding Variational Bayes.
    Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders.
    Roeder, Wu & Duvenaud (2017), Sticking the Landing.
"""

from __future__ import annotations

import argparse

import torch

from inference.data import load_mnist
from vilab.vae.evaluate import importance_weighted_bound
from vilab.vae.train import VAEConfig, train_vae


def main(args) -> dict:
    data = load_mnist(args.data_dir)
    train = data.train_images[: args.train_size]
    test = data.test_images[: args.test_size]
    print(f"{train.shape[0]} training and {test.shape[0]} test images from {data.source}")
    metrics = {}
    for estimator in ("trace", "meanfield", "stl"):
        config = VAEConfig(latent_dim=args.latent_dim, hidden_dim=args.hidden_dim,
                           estimator=estimator, seed=args.seed)  # fmt: skip
        result = train_vae(train, test, config, epochs=args.epochs, progress=False)
        gen = torch.Generator().manual_seed(args.seed)
        iwae = importance_weighted_bound(result.model, result.guide, result.test_images, 100, gen)
        last = result.history[-1]
        print(
            f"{estimator:>9}: test -ELBO {last.test_nelbo:7.2f}, -log p(x) by IWAE(100) "
            f"{-iwae.mean().item():7.2f} nats/image, {last.seconds:.1f} s per epoch"
        )
        metrics[f"{estimator}_test_nelbo"] = last.test_nelbo
        metrics[f"{estimator}_test_nll_iwae"] = -iwae.mean().item()
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST .gz files (else download)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per estimator (2)")
    parser.add_argument("--train-size", type=int, default=10_000, help="training images (10000)")
    parser.add_argument("--test-size", type=int, default=2_000, help="test images (2000)")
    parser.add_argument("--latent-dim", type=int, default=200, help="latent dimension (200)")
    parser.add_argument("--hidden-dim", type=int, default=400, help="hidden width (400)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
