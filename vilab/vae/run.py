"""Runs ``vilab vae``: its flags, and the description ``--help`` shows, are in
:mod:`vilab.vae.flags`."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from inference.data import load_mnist
from vilab import diagnostics
from vilab.devices import resolve_device
from vilab.flags import (
    check_floats,
    check_ints,
    check_output_paths,
    jit_mode,
)
from vilab.io import atomic_write_json
from vilab.report import format_table
from vilab.vae import diagnostics as vae_diagnostics
from vilab.vae.evaluate import importance_weighted_bound, negative_elbo
from vilab.vae.train import VAEConfig, train_vae

__all__ = ["run"]


#: ``--jit``'s backend where neither --jit nor --no-jit is given (see its help).
DEFAULT_JIT = "torchscript"


def _check_args(args) -> None:
    jit_mode(args)  # --jit-backend with --no-jit
    check_ints(args, ("epochs", "batch_size", "latent_dim", "hidden_dim", "num_hidden",
                      "particles", "iwae_samples", "train_size", "test_size"))  # fmt: skip
    check_floats(args, ("lr",))
    diagnostics.check_arguments(args)
    check_output_paths(args, {"--data-dir": args.data_dir})
    checkpoint = args.checkpoint or str(Path(args.out) / "checkpoint.pt")
    if args.resume and not Path(checkpoint).is_file():
        raise ValueError(f"--resume: the checkpoint {checkpoint!r} does not exist")


def _evaluate(model, guide, test_x, history, args, device) -> dict:
    """The trained model on the test set: -ELBO (closed-form KL) and the IWAE estimate of
    log p(x) with ``--iwae-samples``, each a mean over images with its standard error."""
    gen = torch.Generator(device=device).manual_seed(args.seed + 10_000)
    iwae = importance_weighted_bound(model, guide, test_x, args.iwae_samples, gen)
    nelbo = negative_elbo(model, guide, test_x, gen)
    n = test_x.shape[0]

    def se(t):
        return (t.std() / math.sqrt(n)).item() if n > 1 else float("nan")

    return {
        "train_loss": history[-1].train_loss,
        "test_nelbo": nelbo.mean().item(),
        "test_nelbo_se": se(nelbo),
        "iwae_samples": args.iwae_samples,
        "test_log_likelihood_iwae": iwae.mean().item(),
        "test_log_likelihood_iwae_se": se(iwae),
        "mean_seconds_per_epoch": sum(r.seconds for r in history) / len(history),
    }


def _print_report(f: dict) -> None:
    """-ELBO, -log p(x) by IWAE, and their gap, per test image."""
    gap = f["test_nelbo"] + f["test_log_likelihood_iwae"]
    rows = [
        ["test set (nats per image)", "value", "s.e."],
        ["-ELBO", f"{f['test_nelbo']:.2f}", f"{f['test_nelbo_se']:.2f}"],
        [f"-log p(x), IWAE k={f['iwae_samples']}", f"{-f['test_log_likelihood_iwae']:.2f}",
         f"{f['test_log_likelihood_iwae_se']:.2f}"],
        ["-ELBO minus IWAE (>= 0 in expectation)", f"{gap:.2f}", ""],
    ]  # fmt: skip
    print(format_table(rows))


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate, print, write the files; return the summary dict."""
    _check_args(args)
    device = resolve_device(args.device)
    config = VAEConfig(
        latent_dim=args.latent_dim,
        hidden_dim=args.hidden_dim,
        num_hidden=args.num_hidden,
        estimator=args.estimator,
        particles=args.particles,
        batch_size=args.batch_size,
        lr=args.lr,
        binarize=args.binarize,
        seed=args.seed,
    )
    data = load_mnist(args.data_dir, download=args.download)
    for flag, size, images in (("--train-size", args.train_size, data.train_images),
                               ("--test-size", args.test_size, data.test_images)):  # fmt: skip
        if size is not None and size > images.shape[0]:
            raise ValueError(f"{flag} {size} exceeds the {images.shape[0]} images of the data")
    train_images = data.train_images[: args.train_size]
    test_images = data.test_images[: args.test_size]
    out_dir = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out_dir / "checkpoint.pt"
    print(
        f"VAE on MNIST ({data.source}{', md5-verified' if data.md5_verified else ''}): "
        f"{train_images.shape[0]} training / {test_images.shape[0]} test images, "
        f"{args.binarize}-binarised; estimator {args.estimator}; device {device}"
    )
    print("epoch  train loss  test -ELBO  seconds   (nats per image)")

    def report(r, *_):
        print(f"{r.epoch:>5}  {r.train_loss:>10.2f}  {r.test_nelbo:>10.2f}  {r.seconds:>7.1f}")

    result = train_vae(
        train_images,
        test_images,
        config,
        epochs=args.epochs,
        device=device,
        checkpoint=checkpoint,
        resume=args.resume,
        progress=not args.quiet,
        on_epoch=report,
        jit=jit_mode(args, default=DEFAULT_JIT),
    )
    model, guide = result.model.eval(), result.guide.eval()
    test_x = result.test_images
    summary = {
        "config": {**dataclasses.asdict(config), "epochs": args.epochs},
        "data": {
            "source": data.source,
            "md5_verified": data.md5_verified,
            "num_train": train_images.shape[0],
            "num_test": test_x.shape[0],
        },
        "device": str(device),
        "jit": bool(jit_mode(args, default=DEFAULT_JIT)),
        "jit_backend": jit_mode(args, default=DEFAULT_JIT) or None,
        "history": [r._asdict() for r in result.history],
        "final": _evaluate(model, guide, test_x, result.history, args, device),
    }
    f = summary["final"]
    _print_report(f)

    from vilab.vae.plots import plot_learning_curves, plot_reconstructions, plot_samples

    written = [
        plot_learning_curves(out_dir / "learning_curves.png", result.history, f),
        plot_reconstructions(out_dir / "reconstructions.png", model, guide, test_x[:16]),
        plot_samples(out_dir / "samples.png", model, args.seed),
        atomic_write_json(out_dir / "summary.json", summary),
        checkpoint,
    ]
    if args.diagnostics:
        written += vae_diagnostics.report(out_dir, model, guide, test_x, args)
    if args.json:
        written.append(atomic_write_json(args.json, summary))
    print("wrote: " + ", ".join(str(p) for p in written))
    return summary
