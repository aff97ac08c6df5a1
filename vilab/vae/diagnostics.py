"""``vilab vae --diagnostics``: PSIS per test image (no NUTS over 200-dimensional codes of 10^4
images), summarised, with ``psis_khat.png`` and the per-image table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vilab.diagnostics import write_csv, write_netcdf
from vilab.io import save_figure

__all__ = ["report"]


def report(out_dir, model, guide, test_x: torch.Tensor, args) -> list[Path]:
    """PSIS per test image on the first ``--psis-images`` images, summarised."""
    from inference import diagnostics as D  # loads ArviZ: only when diagnosing
    from vilab.vae.evaluate import log_weights

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
        write_netcdf(idata, Path(out_dir) / "posterior.nc"),
        write_csv(rows, Path(out_dir) / "summary.csv"),
        save_figure(D.khat_plot(khat), Path(out_dir) / "psis_khat.png", dpi=110),
    ]
