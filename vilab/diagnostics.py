"""What every ``--diagnostics`` report shares: the flags, and the printing and writing of a
VI-against-NUTS comparison.

For ``vilab earthquake`` and ``vilab expgauss`` (their ``diagnostics.py`` builds the checks): the
fitted guide's draws as InferenceData, the PSIS k-hat of q with its verdict (Yao et al. 2018),
and NUTS on the same model as the reference posterior, compared parameter by parameter.
:func:`report_comparison` writes ``posterior.nc`` (the VI posterior with ``observed_data`` and
``vi_elbo``, plus the NUTS draws in a group ``nuts_posterior``), ``summary.csv`` (one row per
scalar parameter) and ``forest.png`` (VI against NUTS, central 90% intervals). For ``vilab vae``
(:mod:`vilab.vae.diagnostics`): PSIS per test image, summarised.

The ArviZ calls themselves live in :mod:`inference.diagnostics`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vilab.flags import check_ints
from vilab.io import atomic_write_text, save_figure
from vilab.report import format_table

__all__ = [
    "add_arguments",
    "check_arguments",
    "nuts_sizes",
    "report_comparison",
    "write_csv",
    "write_netcdf",
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


def write_netcdf(idata, path: Path) -> Path:
    """``idata.to_netcdf`` to a temporary name beside ``path``, then renamed."""
    from inference.data.atomic import replaced_atomically  # (torch: not for the parser)

    with replaced_atomically(path) as tmp:
        idata.to_netcdf(tmp)
    return path


def write_csv(rows: list[dict], path: Path) -> Path:
    """One row per dict (the first dict's keys are the header), written atomically."""
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


def report_comparison(out_dir: Path, vi, comparison, psis, extra_rows=None, title="") -> list[Path]:
    """Print the VI-against-NUTS table and the PSIS verdict; write ``posterior.nc``,
    ``summary.csv`` and ``forest.png`` to ``out_dir``; return the paths written."""
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
        write_netcdf(idata, out_dir / "posterior.nc"),
        write_csv(rows + extra, out_dir / "summary.csv"),
        save_figure(
            D.forest_plot({"VI": vi, "NUTS": comparison.nuts}, reference="NUTS", title=title),
            out_dir / "forest.png",
            dpi=110,
            bbox_inches="tight",
        ),
    ]


def _psis_value(means: dict, vi, name: str, index: str) -> float:
    """The PSIS-corrected mean of the scalar parameter ``name[index]``."""
    import numpy as np  # (not for the parser: vilab --help imports this module)

    value = np.asarray(means[name])
    if not index:
        return float(value.reshape(-1)[0])
    da = vi.posterior[name]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    labels = [p.strip() for p in index.split(",")]
    pos = tuple(list(map(str, da.coords[d].values)).index(lab) for d, lab in zip(extra, labels))
    return float(value[pos])


def nuts_sizes(args) -> dict:
    """The PSIS and NUTS sizes from the flags, as keyword arguments of the checks."""
    return {
        "num_draws": args.psis_samples,
        "nuts_samples": args.nuts_samples,
        "nuts_warmup": args.nuts_warmup,
        "nuts_chains": args.nuts_chains,
        "seed": args.seed,
    }
