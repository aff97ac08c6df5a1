"""``vilab expgauss --diagnostics``: q = Expo(phi) against PSIS, NUTS and the exact posterior."""

from __future__ import annotations

from pathlib import Path

import torch

from vilab.diagnostics import nuts_sizes, report_comparison

__all__ = ["checks", "report"]


def checks(x: torch.Tensor, theta: float, phi: float, *, num_draws: int,
                    nuts_samples: int, nuts_warmup: int, nuts_chains: int, seed: int = 0,
                    elbo_history=None):  # fmt: skip
    """q = Expo(phi) at prior rate theta against NUTS on z | x, theta: (vi, psis, nuts)."""
    from guides.expgauss import ExpGaussGuide
    from inference import diagnostics as D  # loads ArviZ: only when diagnosing
    from ppl_models.expgauss import model

    theta_t = torch.tensor(theta, dtype=x.dtype)
    guide = ExpGaussGuide(torch.full_like(x, phi))
    dims, coords = {"z": ["obs"]}, {"obs": [0]}
    vi = D.to_inference_data(
        model, guide, x, theta_t, num_samples=num_draws, dims=dims, coords=coords,
        elbo_history=elbo_history, observed_data={"x": x}, seed=seed,
    )  # fmt: skip
    psis = D.psis_check(model, guide, x, theta_t, num_samples=num_draws, seed=seed)
    comparison = D.compare_with_nuts(
        model, vi, x, theta_t, num_samples=nuts_samples, warmup_steps=nuts_warmup,
        num_chains=nuts_chains, dims=dims, coords=coords, seed=seed,
    )  # fmt: skip
    return vi, psis, comparison


def report(out_dir, x: torch.Tensor, theta: float, phi: float, elbo_history, args):
    """:func:`checks` for ``vilab expgauss --diagnostics``, plus the exact
    truncated-normal posterior mean as the table's last row."""
    from analytic.expgauss import posterior_mean

    vi, psis, comparison = checks(x, theta, phi, elbo_history=elbo_history,
                                           **nuts_sizes(args))  # fmt: skip
    exact = posterior_mean(x, theta).item()
    print(f"exact posterior mean of z (truncated normal): {exact:.4f}; q's: {1 / phi:.4f}")
    extra = [{"parameter": "z[0] exact posterior mean", "nuts_mean": exact}]
    return report_comparison(Path(out_dir), vi, comparison, psis, extra,
                   title=f"expgauss x = {x.item():g}: q = Expo({phi:.3g}) vs NUTS")  # fmt: skip
