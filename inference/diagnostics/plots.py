"""Figures of the diagnostics (matplotlib, headless): the forest plot of several posteriors on
one standardised axis (:func:`forest_plot`, :func:`standardise`) and the histogram of per-item
PSIS k-hat (:func:`khat_plot`). Checked by the files they write, not by values, so mutation
testing skips the plotting functions."""

from __future__ import annotations

import numpy as np

from inference.diagnostics.common import arviz
from inference.diagnostics.psis import GOOD_KHAT, USABLE_KHAT

__all__ = ["forest_plot", "khat_plot", "standardise"]


def _num_scalars(idata) -> int:  # pragma: no mutate block (sizes the forest plot)
    return sum(int(v.size // (v.sizes["chain"] * v.sizes["draw"]))
               for v in idata.posterior.data_vars.values())  # fmt: skip


def standardise(posteriors: dict[str, arviz().InferenceData], reference: str) -> dict:
    """Each posterior of ``posteriors`` as (value - m) / s, m and s the mean and sd over chains
    and draws of the ``reference`` posterior, parameter by parameter: the reference then has
    mean 0 and sd 1 in every coordinate, and another's mean is its shift in reference sds and
    its sd the ratio of the two sds. Returns a dict of InferenceData (posterior group only)."""
    ref = posteriors[reference].posterior
    mean, sd = ref.mean(("chain", "draw")), ref.std(("chain", "draw"))
    return {
        name: arviz().InferenceData(posterior=(idata.posterior - mean) / sd)
        for name, idata in posteriors.items()
    }


def forest_plot(posteriors, reference=None, title=""):  # pragma: no mutate block
    """ArviZ's ``plot_forest`` of several posteriors (e.g. VI and NUTS), central 90% intervals;
    returns the matplotlib ``Figure`` (in the user's backend, which this never changes: the caller
    shows, saves or closes it).

    ``posteriors``: name -> InferenceData. With ``reference`` (one of the names), every
    parameter is put on one axis by :func:`standardise`: the reference's interval is about
    +-1.64 and another's shows its shift and its sd ratio.
    """
    if reference is not None:
        posteriors = standardise(posteriors, reference)
    axes = arviz().plot_forest(
        list(posteriors.values()),
        model_names=list(posteriors),
        combined=True,
        hdi_prob=0.9,
        figsize=(8, 1.6 + 0.4 * _num_scalars(next(iter(posteriors.values())))),
    )
    ax = np.ravel(axes)[0]
    fig = ax.figure
    if reference is not None:
        ax.set_xlabel(f"(value - {reference} mean) / {reference} sd")
        ax.axvline(0.0, color="0.6", lw=0.8)
    # one title (ArviZ's "90.0% HDI" sat on top of a suptitle), and the legend beside the
    # rows rather than over them
    ax.set_title(f"{title}: central 90% intervals" if title else "central 90% intervals",
                 fontsize=11)  # fmt: skip
    legend = ax.get_legend()
    if legend is not None:
        labels = [text.get_text() for text in legend.get_texts()]
        handles = legend.legend_handles
        legend.remove()
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def khat_plot(khat):  # pragma: no mutate block
    """Histogram of per-item k-hat with the 0.5 and 0.7 thresholds; returns the matplotlib
    ``Figure`` (in the user's backend, which this never changes: the caller shows, saves or
    closes it)."""
    import matplotlib.pyplot as plt

    khat = np.asarray(khat)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(khat, bins=40, color="0.5")
    for value, label in (
        (GOOD_KHAT, "0.5: good below"),
        (USABLE_KHAT, "0.7: not trustworthy above"),
    ):
        ax.axvline(value, color="k", ls="--", lw=1)
        ax.text(value, ax.get_ylim()[1] * 0.95, " " + label, fontsize=8, va="top")
    ax.set(xlabel="PSIS k-hat", ylabel="test images", title="Did the VAE's q(z | x) work?")
    fig.tight_layout()
    return fig
