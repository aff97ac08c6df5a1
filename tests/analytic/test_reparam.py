"""Reparameterised samplers against torch's distributions, by goodness-of-fit tests.

Each test runs at a fixed seed with N = 10^5 draws and asks for p > 0.01; a deliberately wrong
parameter must give p < 0.01 at the same N, so every test can fail.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, Exponential, RelaxedOneHotCategorical

from analytic.reparam import (
    exponential_rsample,
    gumbel_max_sample,
    gumbel_sample,
    gumbel_softmax_rsample,
)

N = 100_000
PROBS = torch.tensor([0.1, 0.2, 0.3, 0.4])


def test_inverse_cdf_exponential_passes_ks_and_a_wrong_rate_fails():
    """One-sample KS against Expo(rate)'s CDF; the same samples against rate x 1.05 fail."""
    z = exponential_rsample(torch.tensor(1.5), (N,), seed=0).numpy()
    assert stats.kstest(z, stats.expon(scale=1 / 1.5).cdf).pvalue > 0.01
    assert stats.kstest(z, stats.expon(scale=1 / (1.5 * 1.05)).cdf).pvalue < 0.01


def test_inverse_cdf_exponential_matches_torch_exponential():
    """Two-sample KS against torch's own Exponential sampler (p > 0.01)."""
    ours = exponential_rsample(torch.tensor(0.7), (N,), seed=1)
    torch.manual_seed(2)
    theirs = Exponential(torch.tensor(0.7)).sample((N,))
    assert stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 0.01


def test_pathwise_gradient_of_the_mean_is_minus_one_over_rate_squared():
    """d E[z] / d rate = -1/rate^2: autograd of the sample mean, within 4 standard errors
    (the per-draw derivative is -z/rate, whose sd is 1/rate^2)."""
    rate = torch.tensor(1.5, requires_grad=True)
    z = exponential_rsample(rate, (N,), seed=3)
    (grad,) = torch.autograd.grad(z.mean(), rate)
    se = (z.detach() / rate.detach()).std().item() / math.sqrt(N)
    assert abs(grad.item() + 1 / 1.5**2) < 4 * se


def test_gumbel_noise_passes_ks():
    g = gumbel_sample((N,), seed=4).numpy()
    assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 0.01
    assert stats.kstest(g, stats.gumbel_r(loc=0.02).cdf).pvalue < 0.01


def _chi2_pvalue(samples: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(samples, minlength=len(probs)).numpy()
    return stats.chisquare(counts, (probs * len(samples)).numpy()).pvalue


def test_gumbel_max_passes_chi_square_and_wrong_probs_fail():
    """chi^2 against Categorical(probs); the same counts against shifted probabilities fail."""
    samples = gumbel_max_sample(probs=PROBS, sample_shape=(N,), seed=5)
    assert _chi2_pvalue(samples, PROBS) > 0.01
    assert _chi2_pvalue(samples, torch.tensor([0.11, 0.2, 0.3, 0.39])) < 0.01
    torch.manual_seed(6)
    direct = Categorical(PROBS).sample((N,))
    assert _chi2_pvalue(direct, PROBS) > 0.01  # the reference sampler, same test


def test_gumbel_max_accepts_logits_with_minus_infinity():
    logits = torch.tensor([0.0, -math.inf, math.log(3.0)])
    samples = gumbel_max_sample(logits, sample_shape=(N,), seed=7)
    assert int((samples == 1).sum()) == 0
    assert _chi2_pvalue(samples[samples != 1] // 2, torch.tensor([0.25, 0.75])) > 0.01


def test_gumbel_softmax_argmax_is_exactly_categorical_at_any_temperature():
    for temperature in (0.1, 1.0, 10.0):
        y = gumbel_softmax_rsample(probs=PROBS, temperature=temperature, sample_shape=(N,), seed=8)
        assert _chi2_pvalue(y.argmax(-1), PROBS) > 0.01


def test_gumbel_softmax_tends_to_one_hot_as_temperature_falls():
    """The mean largest coordinate rises towards 1 as the temperature falls; 1 minus it shrinks
    about in proportion to the temperature (it is ~ temperature x the density of the gap between
    the two largest perturbed logits at 0), so it is > 0.999 at 0.001."""
    largest = [
        gumbel_softmax_rsample(probs=PROBS, temperature=t, sample_shape=(N,), seed=9)
        .max(-1)
        .values.mean()
        .item()
        for t in (5.0, 1.0, 0.3, 0.1, 0.01, 0.001)
    ]
    assert largest == sorted(largest)
    assert largest[-1] > 0.999


def test_gumbel_softmax_matches_torch_relaxed_one_hot_and_a_wrong_temperature_fails():
    """Two-sample KS on each coordinate against RelaxedOneHotCategorical (p > 0.01 for all;
    Bonferroni is not needed to pass); the same draws at temperature 0.6 fail."""
    ours = gumbel_softmax_rsample(probs=PROBS, temperature=0.5, sample_shape=(N,), seed=10)
    torch.manual_seed(11)
    theirs = RelaxedOneHotCategorical(torch.tensor(0.5), probs=PROBS).sample((N,))
    wrong = RelaxedOneHotCategorical(torch.tensor(0.6), probs=PROBS).sample((N,))
    for k in range(len(PROBS)):
        assert stats.ks_2samp(ours[:, k].numpy(), theirs[:, k].numpy()).pvalue > 0.01
    assert min(stats.ks_2samp(ours[:, k], wrong[:, k]).pvalue for k in range(4)) < 0.01


def test_straight_through_is_one_hot_forward_with_the_relaxed_gradient():
    logits = torch.log(PROBS).requires_grad_(True)
    hard = gumbel_softmax_rsample(logits, temperature=0.5, sample_shape=(5,), hard=True, seed=12)
    soft = gumbel_softmax_rsample(logits, temperature=0.5, sample_shape=(5,), seed=12)
    assert bool(((hard == 0) | (hard == 1)).all()) and bool((hard.sum(-1) == 1).all())
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    weights = torch.arange(4.0)
    (g_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * weights).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft, rtol=1e-12, atol=1e-12)


def test_seed_and_generator_reproduce_and_cannot_be_mixed():
    rate = torch.tensor(2.0)
    a = exponential_rsample(rate, (10,), seed=13)
    b = exponential_rsample(rate, (10,), generator=torch.Generator().manual_seed(13))
    assert torch.equal(a, b)
    assert not torch.equal(a, exponential_rsample(rate, (10,), seed=14))
    with pytest.raises(ValueError, match="seed or generator, not both"):
        exponential_rsample(rate, (10,), seed=1, generator=torch.Generator())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: exponential_rsample(torch.tensor(0.0)), "rate must be finite and > 0, got 0.0"),
        (lambda: exponential_rsample(torch.tensor([1.0, math.nan])), "rate must be finite"),
        (lambda: gumbel_softmax_rsample(PROBS.log(), temperature=0.0), "temperature must be"),
        (lambda: gumbel_softmax_rsample(PROBS.log(), temperature=-1.0), "temperature must be"),
        (lambda: gumbel_max_sample(probs=torch.tensor([0.5, 0.6])), "sum to 1.*1.1"),
        (lambda: gumbel_max_sample(probs=torch.tensor([1.5, -0.5])), ">= 0"),
        (lambda: gumbel_max_sample(PROBS.log(), probs=PROBS), "exactly one of logits or probs"),
        (lambda: gumbel_max_sample(torch.tensor([0.0, math.nan])), "NaN"),
        (lambda: exponential_rsample(torch.tensor(1.0), seed=1.5), "seed must be an integer"),
    ],
)
def test_bad_input_is_rejected_by_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gumbel_max_seed_reproduces_and_batch_shapes_keep_the_category_last():
    """``seed=`` alone fixes the draws (the same seed, the same samples; another, others), and
    with a 2-D sample shape and batched probs the argmax is over the categories (the last
    dimension), not dimension 1."""
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]], dtype=torch.float64)
    a = gumbel_max_sample(probs=probs, sample_shape=(4, 5), seed=11)
    b = gumbel_max_sample(probs=probs, sample_shape=(4, 5), seed=11)
    c = gumbel_max_sample(probs=probs, sample_shape=(4, 5), seed=12)
    assert a.shape == (4, 5, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.max()) <= 2
