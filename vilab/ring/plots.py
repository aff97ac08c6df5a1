"""Figures for the ring mixture, drawn on a headless backend and saved atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from analytic import kl1d, ring  # noqa: E402
from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_data", "plot_elbos", "plot_em_error", "plot_kl"]


def plot_data(path, fits: list[dict]) -> os.PathLike:
    """One panel per radius: the samples, the true and EM's means, contours of EM's density."""
    fig, axes = plt.subplots(1, len(fits), figsize=(5 * len(fits), 4.8), squeeze=False)
    for ax, f in zip(axes[0], fits):
        X = f["_X"].numpy()
        lim = np.abs(X).max() * 1.05
        g = np.linspace(-lim, lim, 200)
        gx, gy = np.meshgrid(g, g)
        grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], -1))
        dens = ring.log_density(grid, torch.tensor(f["means"]).double(),
                                torch.tensor(f["weights"]).double()).exp()  # fmt: skip
        ax.contour(gx, gy, dens.reshape(gx.shape).numpy(), levels=6, colors="0.6", linewidths=0.7)
        ax.scatter(X[:, 0], X[:, 1], s=2, color="0.75", label="samples")
        truth, fitted = np.array(f["true_means"]), np.array(f["means"])
        ax.scatter(truth[:, 0], truth[:, 1], marker="x", color="k", s=50, label="true means")
        ax.scatter(fitted[:, 0], fitted[:, 1], marker="o", facecolors="none", edgecolors="C3",
                   s=60, label="EM means")  # fmt: skip
        ax.set(title=f"R = {f['radius']:g}: largest mean error {f['max_mean_error']:.2f}",
               aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim))  # fmt: skip
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_em_error(path, radii, errors, K: int) -> os.PathLike:
    """EM's largest mean error (after matching) against the radius of the ring."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(radii, errors, "o-", color="C0")
    ax.set(xlabel="radius R", ylabel="largest |EM mean - true mean|", yscale="log",
           title=f"EM on {K} unit Gaussians on a ring: small R is hard")  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_elbos(path, curves: dict, radius: float, K: int) -> os.PathLike:
    """L1, L2 = log p(x) and the gap along x = (t, 0), with their K -> infinity limits."""
    t = curves["t"].numpy()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(t, curves["L2"].numpy(), color="C0", label=f"L2 = log p(x), K = {K}")
    top.plot(t, curves["L2_limit"].numpy(), "--", color="C0", label="log p(x), K -> inf")
    top.plot(t, curves["L1"].numpy(), color="C1", label="L1 (q uniform), any K >= 2")
    top.set(
        ylabel="nats", title=f"The two ELBO choices along a line through the ring, R = {radius:g}"
    )
    top.legend(fontsize=8)
    bottom.plot(t, (curves["L2"] - curves["L1"]).numpy(), color="C2", label=f"L2 - L1, K = {K}")
    bottom.plot(t, (curves["L2_limit"] - curves["L1_limit"]).numpy(), "--", color="C2",
                label="log I0(R|x|), K -> inf")  # fmt: skip
    bottom.set(xlabel="t, x = (t, 0)", ylabel="KL(uniform || p(z|x))")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_kl(path, kl: dict) -> os.PathLike:
    """D1, D2 and the two best single Gaussians (variance reading)."""
    p, q = kl1d.seed_example("variance")
    x = torch.linspace(-20, 20, 2001, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(x, p.log_prob(x).exp(), color="C0", label="D1 = p (bimodal)")
    ax.plot(x, q.log_prob(x).exp(), color="C3",
            label=f"D2: KL(p||q) = {kl['kl_pq']:.1f}, KL(q||p) = {kl['kl_qp']:.2f}")  # fmt: skip
    for key, style, name in (("moment_matched", "--", "argmin KL(p||q)"),
                             ("mode_seeking", ":", "argmin KL(q||p)")):  # fmt: skip
        fit = kl[key]
        g = torch.distributions.Normal(fit["mean"], fit["sd"])
        ax.plot(x, g.log_prob(x.float()).exp(), style, color="k",
                label=f"{name}: N({fit['mean']:.2f}, {fit['sd']:.2f}^2)")  # fmt: skip
    ax.set(xlabel="x", ylabel="density", title="KL asymmetry: mass-covering vs mode-seeking")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
