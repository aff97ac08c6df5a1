"""Reparameterised samplers: gradients that flow through random draws.

Two small demonstrations with ``analytic.reparam``:

1. Inverse-CDF exponential, z = -log(1 - u)/rate. We minimise E[(z - c)^2] over the rate by
   stochastic gradient descent *through the samples*. In closed form
   E[(z - c)^2] = 2/rate^2 - 2c/rate + c^2, minimised at rate = 2/c; SGD should land there.
2. Gumbel-max and Gumbel-softmax: argmax(logits + g) is exactly Categorical; the softmax
   relaxation at temperature t is differentiable and tends to one-hot as t -> 0.

For histograms and goodness-of-fit tests against torch's samplers: ``vilab reparam``.

References:
    Kingma & Welling (2014), Auto-Encoding Variational Bayes, Sec. 2.4.
    Jang, Gu & Poole (2017), Categorical Reparameterization with Gumbel-Softmax.
"""

from __future__ import annotations

import argparse

import torch

from analytic.reparam import exponential_rsample, gumbel_max_sample, gumbel_softmax_rsample


def main(args) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    target = 2.0
    log_rate = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([log_rate], lr=0.05)
    for _ in range(args.steps):
        z = exponential_rsample(log_rate.exp(), (args.num_samples,), generator=gen)
        loss = (z - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rate = log_rate.exp().item()
    print(f"argmin_rate E[(z - {target:g})^2]: SGD through the samples {rate:.4f}, exact 2/c = 1")

    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    draws = gumbel_max_sample(probs=probs, sample_shape=(args.num_samples,), generator=gen)
    freq = torch.bincount(draws, minlength=4).double() / args.num_samples
    print(
        f"Gumbel-max frequencies {[round(f, 3) for f in freq.tolist()]} vs probs {probs.tolist()}"
    )
    largest = {}
    for t in (5.0, 1.0, 0.1, 0.01):
        y = gumbel_softmax_rsample(probs=probs, temperature=t, sample_shape=(args.num_samples,),
                                   generator=gen)  # fmt: skip
        largest[t] = y.max(-1).values.mean().item()
        print(f"Gumbel-softmax, temperature {t:>5g}: mean largest coordinate {largest[t]:.3f}")
    return {
        "learned_rate": rate,
        "gumbel_max_max_abs_freq_error": (freq - probs).abs().max().item(),
        "mean_largest_coordinate_t0.01": largest[0.01],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=10_000, help="draws per step (10000)")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
