"""Figure for the exponential-Gaussian case study, drawn headless and saved atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from analytic.expgauss import elbo, log_evidence, optimal_phi  # noqa: E402
from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_elbo_contour", "plot_elbo_histories"]

# Distances below the optimum smaller than this (nats) are drawn at it.
_FLOOR = 1e-9
_COLOURS = {"trace": "tab:orange", "meanfield": "tab:green", "stl": "tab:purple"}


def plot_elbo_contour(path, x: float, paths: dict, optimum, theta_ml: float) -> os.PathLike:
    """Left: log10(L* - L) over (theta, phi), log axes, with each SVI path; right: the
    closed-form ELBO and log p_theta(x) along each path against the step.

    Args:
        x: the observation (> 0). paths: estimator name -> (theta_t, phi_t), each (T + 1,)
            tensors (start, then after each step). optimum: (theta*, phi*).
        theta_ml: the maximum-likelihood theta, drawn as a vertical line.
    """
    theta_star, phi_star = optimum
    x_value, x = x, torch.tensor(x, dtype=torch.float64)
    best = elbo(x, theta_star, phi_star).item()
    points = [torch.cat([p[0], p[1]]) for p in paths.values()] + [torch.tensor(optimum)]
    lo = min(float(p.min()) for p in points) / 1.5
    hi = max(float(p.max()) for p in points) * 1.5
    grid = torch.logspace(np.log10(lo), np.log10(hi), 300, dtype=torch.float64)
    T, P = torch.meshgrid(grid, grid, indexing="xy")
    gap = (best - elbo(x, T, P)).clamp_min(1e-6).numpy()

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    top = int(np.ceil(np.log10(gap.max())))
    levels = np.logspace(-3, top, 2 * (top + 3) + 1)
    cs = left.contourf(grid, grid, gap, levels=levels, norm=LogNorm(), cmap="viridis_r")
    fig.colorbar(
        cs, ax=left, label="L* - L(theta, phi)  (nats)", ticks=np.logspace(-3, top, top + 4)
    )
    left.plot(grid, optimal_phi(x, grid), "w--", lw=1, label="phi*(theta), best phi per theta")
    left.axvline(theta_ml, color="k", lw=1, ls=":", label=f"exact MLE theta = {theta_ml:.3f}")
    for name, (theta_t, phi_t) in paths.items():
        colour = _COLOURS.get(name, None)
        left.plot(theta_t, phi_t, color=colour, lw=1.5, alpha=0.8, label=f"SVI {name}")
        left.plot(theta_t[-1], phi_t[-1], "o", color=colour, ms=5)
    start = next(iter(paths.values()))
    left.plot(start[0][0], start[1][0], "ks", ms=6, label="start")
    left.plot(theta_star, phi_star, "r*", ms=14, label=f"optimum 2/x = {theta_star:.3f}")
    left.set(xscale="log", yscale="log", xlabel="theta (prior rate)", ylabel="phi (rate of q)")
    left.set_title(f"ELBO of the exponential-Gaussian model, x = {x_value:g}")
    left.legend(fontsize=8, loc="best")

    for name, (theta_t, phi_t) in paths.items():
        steps = np.arange(1, len(theta_t) + 1)
        below = (best - elbo(x, theta_t, phi_t)).clamp_min(_FLOOR)
        right.plot(steps, below, color=_COLOURS.get(name), label=f"SVI {name}")
    right.set(xscale="log", yscale="log", xlabel="SVI step (1 = start)")
    right.set(ylabel="L* - L(theta_t, phi_t)  (nats)")
    gap = (log_evidence(x, theta_star) - best).item()
    right.set_title(f"distance below the optimum along each path\n(log p(x) - L* = {gap:.4f})")
    right.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def plot_elbo_histories(path, histories: dict) -> os.PathLike:
    """SVI's Monte Carlo ELBO estimate per step for each estimator (the convergence check)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, history in histories.items():
        h = np.asarray(history)
        ax.plot(np.arange(1, len(h) + 1), h, color=_COLOURS.get(name), lw=0.8, alpha=0.8,
                label=f"SVI {name}")  # fmt: skip
    low = min(np.quantile(np.asarray(h), 0.05) for h in histories.values())
    high = max(np.asarray(h).max() for h in histories.values())
    ax.set_ylim(low, high + 0.05 * (high - low) + 1e-9)
    ax.set(xscale="log", xlabel="SVI step", ylabel="ELBO estimate (nats)")
    ax.set_title("ELBO trace")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
