"""Figures for the earthquake case study, drawn on a headless backend and saved atomically."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from analytic.earthquake import MeanField  # noqa: E402
from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_elbo_traces", "plot_map"]

# 95% quantile of chi-square with 2 degrees of freedom: -2 log(0.05).
_CHI2_2_95 = -2.0 * math.log(0.05)
# Smallest ELBO gap drawn on the convergence plot (nats).
_FLOOR = 1e-3


def plot_elbo_traces(path, cavi_history, svi_steps, svi_exact, svi_mc) -> os.PathLike:
    """Distance below the best final ELBO, against CAVI iteration and SVI step (log-log).

    A log scale on the gap shows both the first, large gains and the last fraction of a nat.
    Closed-form gaps below ``_FLOOR`` nats are drawn at the floor (so a converged trace stays
    visible); Monte Carlo estimates at or above the best value are not drawn.

    Args:
        cavi_history: (T + 1,) closed-form ELBO at CAVI's start and after each sweep.
        svi_steps, svi_exact: steps at which the closed-form ELBO was evaluated at the guide's
            parameters, and those values. svi_mc: (num_steps,) SVI's Monte Carlo estimates.
            All three empty when SVI was not run (``--steps 0``).
    """
    cavi_history, svi_exact, svi_mc = map(np.asarray, (cavi_history, svi_exact, svi_mc))
    best = max(cavi_history[-1], svi_exact[-1] if svi_exact.size else -np.inf)

    def gap(values, floor=None):
        g = best - values
        return np.maximum(g, floor) if floor else np.where(g > 0, g, np.nan)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(
        np.arange(1, len(svi_mc) + 1),
        gap(svi_mc),
        color="tab:orange",
        alpha=0.25,
        lw=0.8,
        label="SVI, Monte Carlo ELBO estimate",
    )
    ax.plot(
        np.asarray(svi_steps) + 1,
        gap(svi_exact, _FLOOR),
        color="tab:orange",
        lw=2,
        label="SVI, closed-form ELBO at its parameters",
    )
    ax.plot(
        np.arange(len(cavi_history)),
        gap(cavi_history, _FLOOR),
        "o-",
        color="tab:blue",
        ms=4,
        lw=2,
        label="CAVI, closed-form ELBO (0 = its start)",
    )
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_yscale("log")
    ax.set_xlabel("CAVI iteration / SVI step")
    ax.set_ylabel(f"best final ELBO - ELBO (nats; best = {best:.2f}; floor {_FLOOR:g})")
    ax.set_title("Earthquake mixture: convergence of CAVI and SVI")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_map(path, X, S, fits: dict[str, MeanField], tau: float) -> os.PathLike:
    """Events coloured by most probable cluster, marker area by strength; each q(mu_k) mean
    (cross) with its 95% region (solid circle, radius sqrt(chi2_2(0.95) / p_k)) and the 95%
    region of events around it (dashed, radius sqrt(chi2_2(0.95) / tau)). One panel per fit.

    Args:
        X: (N, 2) locations (longitude, latitude); S: (N,) strengths; fits: name -> MeanField.
    """
    X, S = np.asarray(X), np.asarray(S)
    sizes = 3 + 40 * (S - S.min()) / max(S.max() - S.min(), 1)
    fig, axes = plt.subplots(
        1, len(fits), figsize=(6 * len(fits), 5), squeeze=False, sharex=True, sharey=True
    )
    cmap = plt.get_cmap("tab10")
    for ax, (name, q) in zip(axes[0], fits.items()):
        labels = np.asarray(q.probs.argmax(-1))
        ax.scatter(
            X[:, 0], X[:, 1], s=sizes, c=[cmap(k % 10) for k in labels], alpha=0.5, linewidths=0
        )
        for k, (centre, precision) in enumerate(zip(np.asarray(q.loc), np.asarray(q.precision))):
            ax.plot(*centre, "kx", ms=8, mew=2)
            ax.add_patch(
                Circle(centre, math.sqrt(_CHI2_2_95 / precision), fill=False, color="k", lw=1.5)
            )
            ax.add_patch(
                Circle(
                    centre,
                    math.sqrt(_CHI2_2_95 / tau),
                    fill=False,
                    color=cmap(k % 10),
                    lw=1,
                    ls="--",
                )
            )
        ax.set_title(
            f"{name}: clusters (x = E[mu_k]; solid: 95% of q(mu_k); dashed: 95% of events)",
            fontsize=8,
        )
        ax.set_xlabel("longitude (deg)")
        ax.set_aspect("equal", adjustable="box")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("latitude (deg)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
