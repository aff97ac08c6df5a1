"""``--diagnostics`` for the case-study commands: did it converge, and did it work?

For ``vilab earthquake`` and ``vilab expgauss``: the fitted guide's draws as InferenceData, the
PSIS k-hat of q with its verdict (Yao et al. 2018), and NUTS on the same model as the reference
posterior, compared parameter by parameter. Writes ``posterior.nc`` (the VI posterior with
``observed_data`` and ``vi_elbo``, plus the NUTS draws in a group ``nuts_posterior``),
``summary.csv`` (one row per scalar parameter) and ``forest.png`` (VI against NUTS, central 90%
intervals). For ``vilab vae``: PSIS per test image (no NUTS over 200-dimensional codes of 10^4
images), summarised, with ``psis_khat.png`` and the per-image table.

The ArviZ calls themselves live in :mod:`inference.diagnostics`.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from inference.cli_args import check_ints
from inference.io import atomic_write_text
from inference.report import format_table

__all__ = [
    "add_arguments",
    "earthquake_checks",
    "earthquake_report",
    "expgauss_checks",
    "expgauss_report",
    "vae_report",
]


def add_arguments(parser, nuts: bool = True) -> None:
    """The ``--diagnostics`` flag group (``nuts=False``: PSIS only, as for the VAE)."""
    group = parser.add_argument_group("diagnostics (ArviZ)")
    group.add_argument(
        "--diagnostics",
        action="store_true",
        help="also check the fit: PSIS k-hat of q"
        + (", NUTS as the reference posterior" if nuts else " per test image")
        + "; writes posterior.nc, summary.csv and a plot",
    )
    group.add_argument(
        "--psis-samples", type=int, default=2000, help="draws from q for PSIS (2000)"
    )
    if nuts:
        group.add_argument(
            "--nuts-samples", type=int, default=300, help="NUTS draws per chain (300)"
        )
        group.add_argument("--nuts-warmup", type=int, default=300, help="NUTS warm-up steps (300)")
        group.add_argument("--nuts-chains", type=int, default=2, help="NUTS chains (2)")
    else:
        group.add_argument(
            "--psis-images", type=int, default=200, help="test images checked by PSIS (200)"
        )


def check_arguments(args) -> None:
    """Validate the diagnostics flags (before any work)."""
    present = [n for n in ("nuts_samples", "nuts_chains", "psis_images") if hasattr(args, n)]
    check_ints(args, present)
    check_ints(args, ("psis_samples",), low=2)
    if hasattr(args, "nuts_warmup"):
        check_ints(args, ("nuts_warmup",), low=0)


def _write_netcdf(idata, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_csv(rows: list[dict], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _print_comparison(rows: list[dict], psis) -> None:
    table = [["parameter", "VI mean", "NUTS mean", "VI sd", "NUTS sd", "sd VI/NUTS",
              "90% overlap", "NUTS r-hat", "NUTS ESS"]]  # fmt: skip
    for r in rows:
        table.append([
            r["parameter"], f"{r['vi_mean']:.4g}", f"{r['nuts_mean']:.4g}", f"{r['vi_sd']:.3g}",
            f"{r['nuts_sd']:.3g}", f"{r['sd_ratio']:.2f}", f"{r['overlap90']:.2f}",
            f"{r['r_hat']:.3f}", f"{r['ess_bulk']:.0f}",
        ])  # fmt: skip
    print(format_table(table))
    print(
        f"PSIS k-hat = {psis.khat:.2f} ({psis.num_samples} draws, ESS {psis.ess:.0f}): "
        + psis.verdict
    )


def _finish(out_dir: Path, vi, comparison, psis, extra_rows=None, title="") -> list[Path]:
    from inference import diagnostics as D  # loads ArviZ: only when diagnosing

    rows = []
    for r in comparison.rows:
        name, _, index = r["parameter"].partition("[")
        rows.append({**r, "psis_mean": _psis_value(psis.means, vi, name, index.rstrip("]"))})
    idata = vi.copy()
    idata.add_groups({"nuts_posterior": comparison.nuts.posterior})
    idata.attrs.update(psis_khat=float(psis.khat), psis_ess=float(psis.ess),
                       psis_verdict=psis.verdict)  # fmt: skip
    _print_comparison(rows, psis)
    extra = [{**dict.fromkeys(rows[0], ""), **e} for e in (extra_rows or [])]
    return [
        _write_netcdf(idata, out_dir / "posterior.nc"),
        _write_csv(rows + extra, out_dir / "summary.csv"),
        D.forest_plot(
            out_dir / "forest.png",
            {"VI": vi, "NUTS": comparison.nuts},
            reference="NUTS",
            title=title,
        ),  # fmt: skip
    ]


def _psis_value(means: dict, vi, name: str, index: str) -> float:
    """The PSIS-corrected mean of the scalar parameter ``name[index]``."""
    value = np.asarray(means[name])
    if not index:
        return float(value.reshape(-1)[0])
    da = vi.posterior[name]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    labels = [p.strip() for p in index.split(",")]
    pos = tuple(list(map(str, da.coords[d].values)).index(lab) for d, lab in zip(extra, labels))
    return float(value[pos])


def earthquake_checks(
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
        num_chains=nuts_chains, enumerate_discrete=True,
        init_values={"mu": q.loc, "lam": q.concentration / q.rate}, dims=dims, coords=coords,
        seed=seed, progress=progress,
    )  # fmt: skip
    return vi, psis, comparison


def expgauss_checks(x: torch.Tensor, theta: float, phi: float, *, num_draws: int,
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


def _sizes(args) -> dict:
    return {
        "num_draws": args.psis_samples,
        "nuts_samples": args.nuts_samples,
        "nuts_warmup": args.nuts_warmup,
        "nuts_chains": args.nuts_chains,
        "seed": args.seed,
    }


def earthquake_report(out_dir, guide, X, S, hp, elbo_history, args) -> list[Path]:
    """:func:`earthquake_checks` for ``vilab earthquake --diagnostics``: print and write."""
    print(f"NUTS: {args.nuts_chains} chain(s) x ({args.nuts_warmup} warm-up + {args.nuts_samples}) "
          f"draws, Z summed out by enumeration ...")  # fmt: skip
    vi, psis, comparison = earthquake_checks(
        guide, X, S, hp, elbo_history=elbo_history, progress=not args.quiet, **_sizes(args)
    )
    print(f"NUTS took {comparison.seconds:.1f} s")
    return _finish(Path(out_dir), vi, comparison, psis, title="earthquake: SVI vs NUTS")


def expgauss_report(out_dir, x: torch.Tensor, theta: float, phi: float, elbo_history, args):
    """:func:`expgauss_checks` for ``vilab expgauss --diagnostics``, plus the exact
    truncated-normal posterior mean as the table's last row."""
    from analytic.expgauss import posterior_mean

    vi, psis, comparison = expgauss_checks(x, theta, phi, elbo_history=elbo_history,
                                           **_sizes(args))  # fmt: skip
    exact = posterior_mean(x, theta).item()
    print(f"exact posterior mean of z (truncated normal): {exact:.4f}; q's: {1 / phi:.4f}")
    extra = [{"parameter": "z[0] exact posterior mean", "nuts_mean": exact}]
    return _finish(Path(out_dir), vi, comparison, psis, extra,
                   title=f"expgauss x = {x.item():g}: q = Expo({phi:.3g}) vs NUTS")  # fmt: skip


def vae_report(out_dir, model, guide, test_x: torch.Tensor, args) -> list[Path]:
    """PSIS per test image on the first ``--psis-images`` images, summarised."""
    from inference import diagnostics as D  # loads ArviZ: only when diagnosing
    from inference.vae_eval import log_weights

    images = test_x[: args.psis_images]
    gen = torch.Generator(device=images.device).manual_seed(args.seed + 20_000)
    lw = torch.cat([log_weights(model, guide, images[i : i + 10], args.psis_samples, gen)
                    for i in range(0, images.shape[0], 10)], dim=1)  # (S, B)  # fmt: skip
    _, khat, ess = D.psis_from_log_weights(lw.T)
    bands = {
        "good (< 0.5)": float(np.mean(khat < D.GOOD_KHAT)),
        "usable (0.5-0.7)": float(np.mean((khat >= D.GOOD_KHAT) & (khat < D.USABLE_KHAT))),
        "not trustworthy (>= 0.7)": float(np.mean(khat >= D.USABLE_KHAT)),
    }
    print(f"PSIS per test image ({images.shape[0]} images x {args.psis_samples} draws): "
          f"median k-hat {np.median(khat):.2f}, "
          + ", ".join(f"{k} {100 * v:.0f}%" for k, v in bands.items()))  # fmt: skip
    rows = [
        {"image": i, "khat": float(k), "ess": float(e)} for i, (k, e) in enumerate(zip(khat, ess))
    ]
    idata = D.psis_inference_data(lw.T, khat, ess)
    return [
        _write_netcdf(idata, Path(out_dir) / "posterior.nc"),
        _write_csv(rows, Path(out_dir) / "summary.csv"),
        D.khat_plot(Path(out_dir) / "psis_khat.png", khat),
    ]
