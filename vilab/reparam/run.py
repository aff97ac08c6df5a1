"""Runs ``vilab reparam``: its flags, and the description ``--help`` shows, are in
:mod:`vilab.reparam.flags`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch.distributions import Categorical, Exponential, RelaxedOneHotCategorical

from analytic.reparam import exponential_rsample, gumbel_max_sample, gumbel_softmax_rsample
from vilab.devices import resolve_device
from vilab.flags import (
    check_floats,
    check_ints,
    check_output_paths,
    check_range,
)
from vilab.io import atomic_write_json
from vilab.report import format_table

__all__ = ["run"]


def _check_args(args) -> None:
    check_ints(args, ("num_samples",), low=2)
    check_floats(args, ("rate",))
    check_range(args, "rate", 1e-150, 1e150, "its square enters dE[z]/d rate = -1 / rate^2")
    if len(args.probs) < 2 or not all(math.isfinite(p) and p > 0 for p in args.probs):
        raise ValueError(f"--probs must be at least two numbers > 0, got {args.probs}")
    if abs(sum(args.probs) - 1) > 1e-6:
        raise ValueError(f"--probs must sum to 1, got {args.probs} (sum {sum(args.probs):.6g})")
    for t in args.temperatures:
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"--temperatures must all be finite and > 0, got {t}")
    check_output_paths(args)


def _chi2(samples: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    from scipy import stats  # (imported when a test runs, not with the module)

    counts = torch.bincount(samples.cpu(), minlength=len(probs)).double().numpy()
    result = stats.chisquare(counts, probs.cpu().double().numpy() * counts.sum())
    return float(result.statistic), float(result.pvalue)


def _test_exponential(rate_value: float, n: int, kw: dict, gen: torch.Generator):
    from scipy import stats  # (imported when a test runs, not with the module)

    """Our inverse-CDF draws and torch's against the exact CDF and each other (KS), and the
    pathwise dE[z]/drate against -1/rate^2: (summary part, (torch's draws, ours))."""
    rate = torch.tensor(rate_value, **kw, requires_grad=True)
    z_ours = exponential_rsample(rate, (n,), generator=gen)
    (d_rate,) = torch.autograd.grad(z_ours.mean(), rate)
    z_ours = z_ours.detach().cpu()
    z_direct = Exponential(rate.detach()).sample((n,)).cpu()
    exact_cdf = stats.expon(scale=1 / rate_value).cdf
    ks_ours = stats.kstest(z_ours.numpy(), exact_cdf)
    ks_direct = stats.kstest(z_direct.numpy(), exact_cdf)
    ks_two = stats.ks_2samp(z_ours.numpy(), z_direct.numpy())
    part = {
        "rate": rate_value,
        "inverse_cdf_ks": [float(ks_ours.statistic), float(ks_ours.pvalue)],
        "torch_ks": [float(ks_direct.statistic), float(ks_direct.pvalue)],
        "two_sample_ks": [float(ks_two.statistic), float(ks_two.pvalue)],
        "pathwise_grad_mean": d_rate.item(),
        # per draw dz/drate = -z/rate, so the mean's standard error is sd(z/rate)/sqrt(n)
        "pathwise_grad_se": (z_ours / rate_value).std().item() / math.sqrt(n),
        "pathwise_grad_exact": -1 / rate_value**2,
    }
    return part, (z_direct, z_ours)


def _test_categorical(probs: torch.Tensor, n: int, gen: torch.Generator):
    """Gumbel-max draws and torch's Categorical against probs (chi-square):
    (summary part, (torch's draws, ours))."""
    k_ours = gumbel_max_sample(probs=probs, sample_shape=(n,), generator=gen)
    k_direct = Categorical(probs).sample((n,))
    part = {
        "probs": probs.tolist(),
        "gumbel_max_chi2": list(_chi2(k_ours, probs)),
        "torch_chi2": list(_chi2(k_direct, probs)),
    }
    return part, (k_direct.cpu(), k_ours.cpu())


def _test_gumbel_softmax(probs, temperatures, n: int, kw: dict, gen: torch.Generator):
    from scipy import stats  # (imported when a test runs, not with the module)

    """At each temperature: the argmax of our relaxed draws against probs (chi-square), and each
    coordinate against torch's RelaxedOneHotCategorical (KS, the smallest p over coordinates):
    (rows, our draws by temperature, torch's by temperature)."""
    rows, relaxed, relaxed_direct = [], {}, {}
    for t in temperatures:
        y = gumbel_softmax_rsample(probs=probs, temperature=t, sample_shape=(n,), generator=gen)
        y_direct = RelaxedOneHotCategorical(torch.tensor(t, **kw), probs=probs).sample((n,))
        y, y_direct = y.cpu(), y_direct.cpu()
        relaxed[t], relaxed_direct[t] = y, y_direct
        ks_p = min(
            stats.ks_2samp(y[:, k].numpy(), y_direct[:, k].numpy()).pvalue
            for k in range(len(probs))
        )
        chi = _chi2(y.argmax(-1), probs)
        rows.append({
            "temperature": t,
            "argmax_chi2": chi[0],
            "argmax_p": chi[1],
            "ks_vs_torch_min_p": float(ks_p),
            "mean_largest_coordinate": y.max(-1).values.mean().item(),
        })  # fmt: skip
    return rows, relaxed, relaxed_direct


def _print_report(summary: dict) -> None:
    """The table of tests, the pathwise gradient, and how one-hot the relaxed draws are."""
    e, c = summary["exponential"], summary["categorical"]
    ks_ours, ks_direct, ks_two = e["inverse_cdf_ks"], e["torch_ks"], e["two_sample_ks"]
    chi_ours, chi_direct = c["gumbel_max_chi2"], c["torch_chi2"]
    rate = e["rate"]
    rows = [["sampler", "tested against", "statistic", "p-value"]]
    rows += [
        ["exponential, inverse CDF", f"Expo({rate:g}) CDF", f"KS {ks_ours[0]:.4f}",
         f"{ks_ours[1]:.3f}"],
        ["exponential, torch", f"Expo({rate:g}) CDF", f"KS {ks_direct[0]:.4f}",
         f"{ks_direct[1]:.3f}"],
        ["inverse CDF vs torch", "two-sample", f"KS {ks_two[0]:.4f}", f"{ks_two[1]:.3f}"],
        ["categorical, Gumbel-max", "probs", f"chi2 {chi_ours[0]:.2f}", f"{chi_ours[1]:.3f}"],
        ["categorical, torch", "probs", f"chi2 {chi_direct[0]:.2f}", f"{chi_direct[1]:.3f}"],
    ]  # fmt: skip
    for r in summary["gumbel_softmax"]:
        t = r["temperature"]
        rows.append([f"argmax Gumbel-softmax t={t:g}", "probs", f"chi2 {r['argmax_chi2']:.2f}",
                     f"{r['argmax_p']:.3f}"])  # fmt: skip
        rows.append([f"Gumbel-softmax t={t:g}", "torch RelaxedOneHot", "KS, min over k",
                     f"{r['ks_vs_torch_min_p']:.3f}"])  # fmt: skip
    print(
        f"Reparameterised samplers, N = {summary['num_samples']} draws each "
        "(p < 0.01 would flag a wrong sampler)"
    )
    print(format_table(rows))
    print(
        f"pathwise d E[z]/d rate = {e['pathwise_grad_mean']:.5f} +- {e['pathwise_grad_se']:.5f} "
        f"(exact -1/rate^2 = {e['pathwise_grad_exact']:.5f})"
    )
    print(
        "mean largest Gumbel-softmax coordinate (1 = one-hot): "
        + ", ".join(
            f"t={r['temperature']:g}: {r['mean_largest_coordinate']:.3f}"
            for r in summary["gumbel_softmax"]
        )
    )


def run(args: argparse.Namespace) -> dict:
    """Sample, test, print the table, write the files; return the summary dict."""
    _check_args(args)
    device = resolve_device(args.device)
    n = args.num_samples
    kw = {"dtype": torch.float64, "device": device}
    gen = torch.Generator(device=device).manual_seed(args.seed)
    # torch.distributions sample from the global generator. It gets a different seed: with the
    # same one, torch's exponential_ (also an inverse CDF) would return our very draws.
    torch.manual_seed(args.seed + 1)
    if device.type == "cuda":
        torch.cuda.manual_seed(args.seed + 1)
    probs = torch.tensor(args.probs, **kw)
    probs = probs / probs.sum()

    exponential, z_draws = _test_exponential(args.rate, n, kw, gen)
    categorical, k_draws = _test_categorical(probs, n, gen)
    softmax_rows, relaxed, relaxed_direct = _test_gumbel_softmax(
        probs, args.temperatures, n, kw, gen
    )
    summary = {
        "num_samples": n,
        "seed": args.seed,
        "exponential": exponential,
        "categorical": categorical,
        "gumbel_softmax": softmax_rows,
    }
    _print_report(summary)

    from vilab.reparam.plots import plot_samplers  # matplotlib: lazily

    out_dir = Path(args.out)
    written = [
        plot_samplers(
            out_dir / "reparam.png",
            args.rate,
            z_draws,
            probs.cpu(),
            k_draws,
            relaxed,
            relaxed_direct,
        ),  # fmt: skip
        atomic_write_json(out_dir / "summary.json", summary),
    ]
    if args.json:
        written.append(atomic_write_json(args.json, summary))
    print("wrote: " + ", ".join(str(p) for p in written))
    return summary
