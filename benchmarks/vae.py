"""The Pyro SVI VAE trainer against the source's plain-PyTorch loop (the baseline), same
architecture (784-400-400-200, LeakyReLU 0.2), same data (round-binarised MNIST), Adam 1e-3,
batch 100.

Default: seconds per epoch of the plain loop (the source's, with torch's default Adam; and
the same loop with the fused Adam our trainer uses, :func:`inference.svi.adam`) and of the Pyro
trainer with each estimator (trace, meanfield, stl), measured in the same run, best of
``--repeats`` epochs after one warm-up epoch, and the ratio to the source's plain loop (target
<= 1.15).

``--full``: train each for ``--epochs`` (15) epochs from the same initial weights and report the
test negative ELBO (closed-form KL, one sample) and the importance-weighted test log-likelihood
(k = 100), per estimator and for the plain loop. Takes about 8 minutes on 2 CPU cores.

Run:  python benchmarks/vae.py --data-dir path/to/mnist [--full]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from inference.data import binarize, load_mnist
from inference.svi import adam
from vilab.report import format_table
from vilab.vae.evaluate import importance_weighted_bound, negative_elbo
from vilab.vae.plain import plain_epoch
from vilab.vae.train import VAEConfig, build_vae, train_vae

ESTIMATORS = ("trace", "meanfield", "stl")


def _plain(train, test_x, epochs, config, fused=False):
    """Train by the plain loop from the weights ``train_vae`` starts from (same seed), with the
    source's optimiser (``torch.optim.Adam`` defaults) or, ``fused``, the one our trainer uses."""
    model, guide = build_vae(config, train.shape[1], dtype=train.dtype)
    params = list(guide.parameters()) + list(model.parameters())
    optimizer = adam(params, config.lr) if fused else torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    images = binarize(train, "round")
    times = []
    for _ in range(epochs):
        _, seconds = plain_epoch(model, guide, optimizer, images, config.batch_size, gen)
        times.append(seconds)
    return model, guide, times


def _evaluate(model, guide, test_x, k, seed):
    gen = torch.Generator().manual_seed(seed)
    nelbo = negative_elbo(model, guide, test_x, gen)
    iwae = importance_weighted_bound(model, guide, test_x, k, gen)
    return nelbo.mean().item(), -iwae.mean().item()


def main(args) -> dict:
    data = load_mnist(args.data_dir, download=args.data_dir is None)
    train = data.train_images[: args.train_size]
    test = data.test_images[: args.test_size]
    test_x = binarize(test, "round")
    base = VAEConfig(latent_dim=args.latent_dim, hidden_dim=args.hidden_dim, seed=args.seed)
    epochs = args.epochs if args.full else 1 + args.repeats
    results = {}

    print(
        f"{train.shape[0]} training images, {torch.get_num_threads()} threads; "
        f"{'full comparison, ' + str(epochs) + ' epochs' if args.full else 'timing'}"
    )
    for label, fused in (("plain", False), ("plain, fused Adam", True)):
        if fused and args.full:
            continue  # the same arithmetic up to rounding: timing only
        model, guide, times = _plain(train, test_x, epochs, base, fused)
        results[label] = {"seconds_per_epoch": min(times[1:]) if len(times) > 1 else times[0]}
        if args.full:
            results[label].update(
                zip(
                    ("test_nelbo", "test_nll_iwae"),
                    _evaluate(model, guide, test_x, args.iwae_samples, args.seed),
                )
            )
    for name in args.estimators:
        config = dataclasses.replace(base, estimator=name)
        result = train_vae(train, test, config, epochs=epochs, progress=not args.quiet)
        times = [r.seconds for r in result.history]
        results[name] = {"seconds_per_epoch": min(times[1:]) if len(times) > 1 else times[0]}
        if args.full:
            results[name].update(
                zip(
                    ("test_nelbo", "test_nll_iwae"),
                    _evaluate(
                        result.model, result.guide, result.test_images, args.iwae_samples, args.seed
                    ),
                )
            )

    plain_s = results["plain"]["seconds_per_epoch"]
    header = ["trainer", "s / epoch", "vs plain"]
    if args.full:
        header += ["test -ELBO", f"test -log p (IWAE {args.iwae_samples})"]
    rows = [header]
    for name, r in results.items():
        row = [
            name if name.startswith("plain") else f"Pyro {name}",
            f"{r['seconds_per_epoch']:.2f}",
            f"{r['seconds_per_epoch'] / plain_s:.3f}",
        ]
        if args.full:
            row += [f"{r['test_nelbo']:.2f}", f"{r['test_nll_iwae']:.2f}"]
        rows.append(row)
    print(format_table(rows))
    for name in args.estimators:
        results[name]["ratio"] = results[name]["seconds_per_epoch"] / plain_s
    if args.full and "stl" in results and "trace" in results:
        gain = results["trace"]["test_nll_iwae"] - results["stl"]["test_nll_iwae"]
        print(f"STL vs Trace_ELBO, test -log p (IWAE): {gain:+.2f} nats (> 0: STL better)")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder with the MNIST .gz files (else download)")
    parser.add_argument("--full", action="store_true", help="the full training comparison")
    parser.add_argument("--epochs", type=int, default=15, help="epochs with --full (15)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed epochs after the warm-up, best kept (1)"
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=ESTIMATORS,
        default=list(ESTIMATORS),
        help="Pyro estimators to run (default all three)",
    )
    parser.add_argument("--train-size", type=int, help="first N training images (default all)")
    parser.add_argument("--test-size", type=int, help="first M test images (default all)")
    parser.add_argument("--latent-dim", type=int, default=200, help="latent dimension (200)")
    parser.add_argument("--hidden-dim", type=int, default=400, help="hidden width (400)")
    parser.add_argument("--iwae-samples", type=int, default=100, help="k for --full (100)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
