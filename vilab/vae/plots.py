"""Figures for the VAE: learning curves, reconstructions and prior samples (headless, atomic)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_learning_curves", "plot_reconstructions", "plot_samples"]


def _grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows * cols, 784) -> one (28 rows, 28 cols) mosaic with 1-pixel gaps."""
    side = 28
    canvas = np.ones((rows * (side + 1) - 1, cols * (side + 1) - 1))
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        canvas[r * (side + 1) : r * (side + 1) + side, c * (side + 1) : c * (side + 1) + side] = (
            img.reshape(side, side)
        )
    return canvas


def plot_learning_curves(path, history, final: dict) -> os.PathLike:
    """Training loss and test -ELBO per epoch (nats per image), with the final IWAE estimate."""
    epochs = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(epochs, [r.train_loss for r in history], "o-", ms=3, label="training loss (-ELBO)")
    ax.plot(epochs, [r.test_nelbo for r in history], "s-", ms=3, label="test -ELBO")
    ax.axhline(-final["test_log_likelihood_iwae"], color="k", ls=":", lw=1,
               label=f"test -log p(x), IWAE k={final['iwae_samples']}")  # fmt: skip
    ax.set(xlabel="epoch", ylabel="nats per image", title="Bernoulli VAE on MNIST")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


@torch.no_grad()
def plot_reconstructions(path, model, guide, images: torch.Tensor) -> os.PathLike:
    """Top row: test images; bottom row: Bernoulli means sigmoid(g(mu(x))) of their codes."""
    loc, _ = guide.encoder(images)
    recon = torch.sigmoid(model.decoder(loc))
    n = images.shape[0]
    both = np.concatenate([images.cpu().numpy(), recon.cpu().numpy()])
    fig, ax = plt.subplots(figsize=(max(n * 0.6, 4.0), 1.8))
    ax.imshow(_grid(both, 2, n), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("test images (top) and their reconstructions\nsigmoid(g(mu(x))) (bottom)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


@torch.no_grad()
def plot_samples(path, model, seed: int, rows: int = 8, cols: int = 8) -> os.PathLike:
    """Bernoulli means sigmoid(g(z)) for z ~ N(0, I) from the prior."""
    param = next(model.parameters())
    gen = torch.Generator(device=param.device).manual_seed(seed)
    z = torch.randn(rows * cols, model.latent_dim, generator=gen, dtype=param.dtype,
                    device=param.device)  # fmt: skip
    means = torch.sigmoid(model.decoder(z)).cpu().numpy()
    fig, ax = plt.subplots(figsize=(cols * 0.6, rows * 0.6 + 0.3))
    ax.imshow(_grid(means, rows, cols), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("samples from the prior: sigmoid(g(z)), z ~ N(0, I)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
