"""Figures for the earthquake case study, drawn on a headless backend and saved atomically."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
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

    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
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
    ax.set_ylabel("best final ELBO - ELBO (nats)")
    ax.set_title(
        f"Earthquake mixture: convergence of CAVI and SVI\n(best final ELBO {best:.2f}; gaps "
        f"below {_FLOOR:g} nats drawn at {_FLOOR:g})",
        fontsize=10,
    )
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path, dpi=120)


def plot_map(path, X, S, fits: dict[str, MeanField], tau: float) -> os.PathLike:
    """Events coloured by most probable cluster, marker area by strength (legend: the
    smallest, median and largest); each q(mu_k) mean (a small cross, numbered k) with its 95%
    region (solid circle, radius sqrt(chi2_2(0.95) / p_k), drawn over the events) and the 95%
    region of events around it (dashed, radius sqrt(chi2_2(0.95) / tau)). One panel per fit.

    Args:
        X: (N, 2) locations (longitude, latitude); S: (N,) strengths; fits: name -> MeanField.
    """
    X, S = np.asarray(X), np.asarray(S)
    low, high = float(S.min()), float(S.max())

    def area(s):  # marker area (points^2) by strength
        return 3 + 40 * (np.asarray(s) - low) / max(high - low, 1)

    # the panels get the same limits below, not sharex/sharey: constrained layout then keeps
    # the titles of equal-aspect panels inside the canvas (shared, they reached 7 px above it)
    fig, axes = plt.subplots(1, len(fits), figsize=(6 * len(fits), 5.6), squeeze=False,
                             layout="constrained")  # fmt: skip
    cmap = plt.get_cmap("tab10")
    for ax, (name, q) in zip(axes[0], fits.items()):
        labels = np.asarray(q.probs.argmax(-1))
        ax.scatter(X[:, 0], X[:, 1], s=area(S), c=[cmap(k % 10) for k in labels], alpha=0.45,
                   linewidths=0, zorder=1)  # fmt: skip
        for k, (centre, precision) in enumerate(zip(np.asarray(q.loc), np.asarray(q.precision))):
            # the 95% region of q(mu_k) is small: drawn over the events, with a small centre
            # mark that does not cover it
            ax.add_patch(Circle(centre, math.sqrt(_CHI2_2_95 / tau), fill=False,
                                color=cmap(k % 10), lw=1, ls="--", zorder=2))  # fmt: skip
            ax.add_patch(Circle(centre, math.sqrt(_CHI2_2_95 / precision), fill=False,
                                color="k", lw=1.5, zorder=4))  # fmt: skip
            ax.plot(*centre, "k+", ms=5, mew=1, zorder=5)
            ax.annotate(str(k), centre, xytext=(6, 6), textcoords="offset points", fontsize=9,
                        fontweight="bold", zorder=5)  # fmt: skip
        ax.set_title(f"{name}: events by most probable cluster k", fontsize=10)
        ax.set_xlabel("longitude (deg)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    for get, set_ in (("get_xlim", "set_xlim"), ("get_ylim", "set_ylim")):
        limits = np.array([getattr(ax, get)() for ax in axes[0]])
        for ax in axes[0]:
            getattr(ax, set_)(limits[:, 0].min(), limits[:, 1].max())
    axes[0, 0].set_ylabel("latitude (deg)")
    grey = "0.5"
    handles = [
        Line2D([], [], color="k", marker="+", ls="", ms=7, label="E[mu_k] (k beside it)"),
        Line2D([], [], color="k", marker="o", mfc="none", ls="", ms=9,
               label="95% region of q(mu_k) (solid)"),
        Line2D([], [], color=grey, marker="o", mfc="none", ls="", ms=9, mew=0.8,
               label="95% of cluster k's events (dashed)"),
    ]  # fmt: skip
    for s in np.unique(np.quantile(S, [0.0, 0.5, 1.0]).round()):
        handles.append(Line2D([], [], color=grey, marker="o", ls="", alpha=0.6, mew=0,
                              ms=math.sqrt(area(s)), label=f"strength {s:g}"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
               ncols=len(handles) if len(fits) > 1 else (len(handles) + 1) // 2)  # fmt: skip
    return save_figure(fig, path, dpi=120)
