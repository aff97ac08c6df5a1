"""Figure for ``vilab reparam``: direct vs reparameterised samples (headless, saved atomically)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_samplers"]


def plot_samplers(
    path, rate: float, exponential, probs, categorical, relaxed: dict, relaxed_direct: dict
) -> os.PathLike:
    """Top: exponential histograms (torch vs inverse CDF, exact density over them) and
    categorical frequencies (torch vs Gumbel-max, exact probs as markers). Bottom, one panel per
    temperature: histograms of the Gumbel-softmax coordinate of the most probable category,
    ours vs torch's RelaxedOneHotCategorical (mass at 0 and 1 = nearly one-hot samples).

    Args:
        exponential: (direct, ours), each (N,). probs: (K,). categorical: (direct, ours), (N,)
            indices. relaxed, relaxed_direct: temperature -> (N, K) samples.
    """
    temps = list(relaxed)
    ncols = max(2, len(temps))
    fig, axes = plt.subplots(2, ncols, figsize=(3.4 * ncols, 6.5), squeeze=False)
    for ax in axes[0, 2:]:
        ax.axis("off")

    ax = axes[0, 0]
    direct, ours = (t.numpy() for t in exponential)
    bins = np.linspace(0, np.quantile(direct, 0.995), 60)
    ax.hist(direct, bins, density=True, alpha=0.5, label="torch Exponential")
    ax.hist(ours, bins, density=True, alpha=0.5, label="inverse CDF -log(1-u)/rate")
    ax.plot(bins, rate * np.exp(-rate * bins), "k", lw=1, label="exact density")
    ax.set(title=f"Exponential, rate {rate:g}", xlabel="z")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    K = len(probs)
    width = 0.4
    for shift, samples, label in ((-width / 2, categorical[0], "torch Categorical"),
                                  (width / 2, categorical[1], "Gumbel-max")):  # fmt: skip
        freq = torch.bincount(samples, minlength=K).double() / len(samples)
        ax.bar(np.arange(K) + shift, freq.numpy(), width, alpha=0.7, label=label)
    ax.plot(np.arange(K), probs.numpy(), "k_", ms=20, mew=2, label="probs")
    ax.set(title="Categorical", xlabel="category", ylabel="frequency", xticks=range(K))
    ax.legend(fontsize=7)

    top = int(probs.argmax())
    bins = np.linspace(0, 1, 51)
    for ax, t in zip(axes[1], temps):
        ax.hist(relaxed_direct[t][:, top].numpy(), bins, density=True, alpha=0.5,
                label="torch RelaxedOneHot")  # fmt: skip
        ax.hist(relaxed[t][:, top].numpy(), bins, density=True, alpha=0.5,
                label="Gumbel-softmax")  # fmt: skip
        ax.set(title=f"temperature {t:g}", xlabel=f"y_{top} (p = {probs[top].item():.2f})")
        ax.set_yscale("log")
    axes[1, 0].legend(fontsize=7)
    for ax in axes[1, len(temps) :]:
        ax.axis("off")
    fig.suptitle("Direct vs reparameterised sampling", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
