"""``vilab earthquake --diagnostics``: SVI's q against PSIS and NUTS (Z summed out)."""

from __future__ import annotations

from pathlib import Path

from vilab.diagnostics import nuts_sizes, report_comparison

__all__ = ["checks", "report"]


def checks(
    guide, X, S, hp, *, num_draws: int, nuts_samples: int, nuts_warmup: int, nuts_chains: int,
    seed: int = 0, elbo_history=None, progress=False,
):  # fmt: skip
    """The earthquake fit's InferenceData, PSIS check and NUTS comparison: (vi, psis, nuts).

    PSIS with Z summed out exactly (the weights compare q(mu) q(lambda) with
    p(mu, lambda | data)); NUTS with Z enumerated, chains started at q's means so the mixture
    labels agree. ``guide``: an :class:`guides.earthquake.EarthquakeGuide`.
    """
    from analytic.earthquake import log_joint_marginal
    from inference import diagnostics as D  # loads ArviZ: only when diagnosing
    from ppl_models.earthquake import model

    dims = {"mu": ["cluster", "coord"], "lam": ["cluster"]}
    coords = {"cluster": list(range(hp.num_clusters)), "coord": ["lon", "lat"]}
    vi = D.to_inference_data(
        model, guide, X, S, hp, num_samples=num_draws, sites=["mu", "lam"], dims=dims,
        coords=coords, elbo_history=elbo_history, observed_data={"X": X, "S": S}, seed=seed,
    )  # fmt: skip
    psis = D.psis_check(
        model, guide, X, S, hp, num_samples=num_draws, sites=["mu", "lam"],
        log_joint_fn=lambda d: log_joint_marginal(X, S, hp, d["mu"], d["lam"]), seed=seed,
    )  # fmt: skip
    q = guide.mean_field()
    comparison = D.compare_with_nuts(
        model, vi, X, S, hp, num_samples=nuts_samples, warmup_steps=nuts_warmup,
        num_chains=nuts_chains,
        init_values={"mu": q.loc, "lam": q.concentration / q.rate}, dims=dims, coords=coords,
        seed=seed, progress=progress,
    )  # fmt: skip
    return vi, psis, comparison


def report(out_dir, guide, X, S, hp, elbo_history, args) -> list[Path]:
    """:func:`checks` for ``vilab earthquake --diagnostics``: print and write."""
    print(f"NUTS: {args.nuts_chains} chain(s) x ({args.nuts_warmup} warm-up + {args.nuts_samples}) "
          f"draws, Z summed out by enumeration ...")  # fmt: skip
    vi, psis, comparison = checks(
        guide, X, S, hp, elbo_history=elbo_history, progress=not args.quiet, **nuts_sizes(args)
    )
    print(f"NUTS took {comparison.seconds:.1f} s")
    return report_comparison(Path(out_dir), vi, comparison, psis, title="earthquake: SVI vs NUTS")
