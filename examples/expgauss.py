"""Exponential-Gaussian model: SVI learns theta and phi, and lands on the closed form.

Model: z ~ Expo(theta), x | z ~ N(z, 1); variational family q(z) = Expo(phi). The ELBO,
its gradients, the joint optimum theta* = phi* = 2/x and the exact evidence log p_theta(x) all
have closed forms (``analytic.expgauss``). This script prints them for one observation x, runs
Pyro SVI from a distant start with Trace_ELBO (pathwise gradient) and TraceMeanField_ELBO
(closed-form KL between exponentials), and compares. It ends with variational EM's bias:
theta* = 2/x is not the maximum-likelihood theta, because q is not the exact posterior.

For the contour plot with the SVI paths, use the command line: ``vilab expgauss --x 1``.

References:
    Exercise Sheet 02, Problems 1-2, "Machine Learning for Graphs and Sequential Data".
    Kingma & Welling (2014), Auto-Encoding Variational Bayes, Sec. 2.4.
"""

from __future__ import annotations

import argparse

import torch

from analytic import expgauss
from vilab.expgauss.svi import fit_expgauss


def main(args) -> dict:
    x = torch.tensor([args.x], dtype=torch.float64)
    theta_star, phi_star = expgauss.joint_optimum(x)
    best = expgauss.elbo(x, theta_star, phi_star).item()
    evidence = expgauss.log_evidence(x, theta_star).item()
    print(f"x = {args.x:g}: closed-form optimum theta* = phi* = 2/x = {theta_star.item():.4f}")
    print(f"  ELBO* = {best:.5f}, log p(x) = {evidence:.5f}, gap = KL = {evidence - best:.5f}")

    metrics = {"elbo_star": best, "log_evidence": evidence}
    for estimator in ("trace", "meanfield"):
        fit = fit_expgauss(x, estimator, num_steps=args.steps, seed=args.seed)
        error = max(
            abs(fit.theta.item() / theta_star.item() - 1), abs(fit.phi.item() / phi_star.item() - 1)
        )
        value = expgauss.elbo(x, fit.theta, fit.phi).item()
        print(
            f"  SVI {estimator:>9}: theta = {fit.theta.item():.4f}, phi = {fit.phi.item():.4f}, "
            f"ELBO = {value:.5f} ({100 * error:.2f}% from the optimum, {fit.seconds:.1f} s)"
        )
        metrics[f"{estimator}_rel_error"] = error
        metrics[f"{estimator}_elbo"] = value

    theta_ml = expgauss.ml_theta(x).item()
    print(
        f"exact MLE theta = {theta_ml:.4f} (log p = "
        f"{expgauss.log_evidence(x, theta_ml).item():.5f}) vs variational EM's 2/x: the bias of VI"
    )
    metrics["ml_theta"] = theta_ml
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--x", type=float, default=1.0, help="the observation, > 0 (default 1)")
    parser.add_argument("--steps", type=int, default=2000, help="SVI steps (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for SVI (0)")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
