"""Figures of ``vilab ring --density``, drawn on a headless backend and saved atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from analytic import kde, ring  # noqa: E402
from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_bandwidth", "plot_maps", "plot_training"]


def plot_bandwidth(path, studies: list[dict]) -> os.PathLike:
    """Mean validation log-likelihood against the KDE bandwidth, one line per radius."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, s in enumerate(studies):
        v = s["kde_validation"]
        ax.plot(v["grid"], v["scores"], "o-", ms=3, color=f"C{i}", label=f"R = {s['radius']:g}")
        ax.axvline(s["kde_bandwidth"], color=f"C{i}", ls=":", lw=1)
        ax.axvline(s["scott_bandwidth"], color=f"C{i}", ls="--", lw=0.8)
    ax.set(xlabel="bandwidth h", ylabel="validation log-likelihood per point",
           title="KDE bandwidth: chosen (dotted), Scott = Silverman (dashed)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def _grid(X: torch.Tensor, n: int = 160):
    lim = float(X.abs().max()) * 1.1
    g = np.linspace(-lim, lim, n)
    gx, gy = np.meshgrid(g, g)
    return gx, gy, torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], -1)).to(X.dtype)


def plot_maps(path, studies: list[dict]) -> os.PathLike:
    """Rows: radii; columns: the true density, EM's, the KDE's and the EBM's (filled contours
    of the density on a common colour scale per row), with the test log-likelihood in titles."""
    fig, axes = plt.subplots(len(studies), 4, figsize=(16, 4.3 * len(studies)), squeeze=False,
                             layout="constrained")  # fmt: skip
    for row, s in zip(axes, studies):
        m = s["_maps"]
        gx, gy, grid = _grid(m["X"])
        with torch.no_grad():
            fields = {
                "truth": ring.log_density(grid, m["truth"]),
                "em": ring.log_density(grid, m["fit"].means, m["fit"].weights),
                "kde": kde.kde_log_density(m["X"], grid, m["bandwidth"]),
                "ebm": m["energy"](grid) - m["log_a"],
            }
        top = max(float(f.exp().max()) for f in fields.values())
        levels = np.linspace(0, top, 15)
        titles = {"truth": "true density", "em": "EM mixture", "kde": "KDE", "ebm": "EBM"}
        for ax, (key, field) in zip(row, fields.items()):
            ax.contourf(gx, gy, field.exp().reshape(gx.shape).numpy(), levels=levels,
                        cmap="viridis", extend="max")  # fmt: skip
            score = s["test_log_likelihood"][key]["mean"]
            ax.set(title=f"R = {s['radius']:g}, {titles[key]}: {score:.3f}", aspect="equal",
                   xticks=[], yticks=[])  # fmt: skip
    return save_figure(fig, path)


def plot_training(path, studies: list[dict]) -> os.PathLike:
    """The EBM's training objective (mean_b E - log Z^, smoothed over 50 steps) beside the true
    density's test score, and the proposal's ESS fraction, per radius."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, s in enumerate(studies):
        t = s["ebm_training"]
        obj = np.asarray(t["objective"])
        window = min(50, len(obj))
        smooth = np.convolve(obj, np.ones(window) / window, mode="valid")
        ax1.plot(np.arange(window - 1, len(obj)), smooth, color=f"C{i}",
                 label=f"R = {s['radius']:g}")  # fmt: skip
        ax1.axhline(s["test_log_likelihood"]["truth"]["mean"], color=f"C{i}", ls=":", lw=1)
        ax2.plot(100 * np.asarray(t["ess_fraction"]), color=f"C{i}", lw=0.7,
                 label=f"R = {s['radius']:g}")  # fmt: skip
    ax1.set(xlabel="step", ylabel="objective (nats per point)",
            title="EBM training (dotted: the true density's test score)")  # fmt: skip
    ax2.set(xlabel="step", ylabel="ESS (% of the draws)", title="proposal's effective sample size")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    return save_figure(fig, path)
