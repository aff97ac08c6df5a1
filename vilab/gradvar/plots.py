"""Figure for ``vilab gradvar``: gradient variance along an SVI run, drawn headless."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vilab.io import save_figure  # noqa: E402

__all__ = ["plot_variance_along_run"]

_COLOURS = {
    "trace": "tab:orange",
    "meanfield": "tab:green",
    "stl": "tab:purple",
    "enum": "tab:blue",
}
# Variances below this are drawn at it (STL at the exact posterior is 0 up to rounding).
_FLOOR = 1e-30


def plot_variance_along_run(path, model: str, trace_run, train: str) -> os.PathLike:
    """Left: total gradient variance of each estimator against the SVI step (log scale).
    Right: the run's Monte Carlo ELBO estimate.

    Args:
        trace_run: :class:`inference.svi.VarianceTrace`. train: the estimator of the run.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    steps = np.asarray(trace_run.steps)
    for name, values in trace_run.total_variance.items():
        left.plot(steps, np.maximum(values, _FLOOR), "o-", ms=3, color=_COLOURS.get(name),
                  label=name)  # fmt: skip
    left.set(yscale="log", xlabel="SVI step", ylabel="total gradient variance (sum over params)")
    left.set_title(f"{model}: gradient variance at the current parameters")
    left.legend()
    history = trace_run.fit.elbo_history.numpy()
    right.plot(np.arange(1, len(history) + 1), history, color="0.3", lw=0.8)
    low = np.quantile(history, 0.05)
    right.set_ylim(low, history.max() + 0.05 * (history.max() - low) + 1e-9)
    right.set(xlabel="SVI step", ylabel="ELBO estimate", title=f"the run ({train})")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
