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


# --- the contract's edges: every message names its field, every boundary is where the
# docstring puts it, dtypes and generators are honoured (each kills a planted bug that the
# goodness-of-fit tests above cannot see). ---


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: exponential_rsample(torch.tensor(1.0), (-1,)),
            "sample_shape must have sizes >= 0, got (-1,)",
        ),
        (
            lambda: gumbel_max_sample(PROBS.log(), probs=PROBS),
            "give exactly one of logits or probs",
        ),
        (lambda: gumbel_max_sample(), "give exactly one of logits or probs"),
        (
            lambda: gumbel_max_sample(probs=torch.tensor(1.0)),
            "probs must have shape (..., K) with K >= 1, got ()",
        ),
        (
            lambda: gumbel_max_sample(torch.tensor(1.0)),
            "logits must have shape (..., K) with K >= 1, got ()",
        ),
        (
            lambda: gumbel_max_sample(probs=torch.tensor([1.5, -0.5])),
            "probs must be finite and >= 0",
        ),
        (
            lambda: gumbel_max_sample(torch.tensor([0.0, math.inf])),
            "logits must not be NaN or +inf",
        ),
        (
            lambda: exponential_rsample(torch.tensor(1.0), seed=1, generator=torch.Generator()),
            "give seed or generator, not both",
        ),
        (
            lambda: exponential_rsample(torch.tensor([2.0, 0.5]) - 1.0),
            "rate must be finite and > 0, got -0.5",
        ),
    ],
)
def test_every_message_is_exact(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize(
    "rows, worst", [([[0.5, 0.5], [0.5, 0.4]], 0.9), ([[0.5, 0.5], [0.6, 0.5]], 1.1)]
)
def test_the_probs_message_reports_the_row_farthest_from_one(rows, worst):
    """A valid row (sum 1) beside a bad one, below and above 1: the bad row is reported."""
    with pytest.raises(ValueError, match=f"a row sums to {worst}"):
        gumbel_max_sample(probs=torch.tensor(rows, dtype=torch.float64))


def test_one_category_and_zero_probabilities_are_valid():
    """K = 1 (the shape check is K >= 1, not K >= 2) always gives category 0; a zero
    probability (probs >= 0, not > 0) is never drawn."""
    assert torch.equal(
        gumbel_max_sample(probs=torch.ones(1), sample_shape=(5,), seed=0),
        torch.zeros(5, dtype=torch.long),
    )
    assert torch.equal(
        gumbel_max_sample(torch.zeros(1), sample_shape=(5,), seed=0),
        torch.zeros(5, dtype=torch.long),
    )
    draws = gumbel_max_sample(probs=torch.tensor([0.5, 0.0, 0.5]), sample_shape=(2000,), seed=0)
    assert not bool((draws == 1).any()) and set(draws.tolist()) == {0, 2}
    assert gumbel_max_sample(torch.zeros(2), sample_shape=(0,), seed=0).shape == (0,)


def test_square_batches_of_logits_are_normalised_row_by_row():
    """Logits (3, 3) with rows of different scale: each row's draws pass a chi-square test
    against that row's softmax (p > 0.01 at 3 x 20,000 draws). Normalising along the wrong
    axis (a (3,) log-normaliser broadcast across columns) shifts the frequencies by up to
    0.3, p < 1e-100."""
    logits = torch.tensor(
        [[0.0, 1.0, 2.0], [3.0, 3.0, -1.0], [-2.0, 0.5, 0.0]], dtype=torch.float64
    )
    draws = gumbel_max_sample(logits, sample_shape=(20_000,), seed=5)
    for row in range(3):
        counts = torch.bincount(draws[:, row], minlength=3).numpy()
        expected = torch.softmax(logits[row], -1).numpy() * 20_000
        assert stats.chisquare(counts, expected).pvalue > 0.01


def test_a_given_generator_is_the_one_used():
    """The sample is the documented transform of the given generator's uniforms: the same
    draws as seed=, different from the global generator's."""
    logits = PROBS.log()
    torch.manual_seed(0)
    for call in (
        lambda **kw: gumbel_max_sample(logits, sample_shape=(50,), **kw),
        lambda **kw: gumbel_softmax_rsample(logits, sample_shape=(50,), **kw),
        lambda **kw: gumbel_sample((50,), **kw),
    ):
        a = call(generator=torch.Generator().manual_seed(21))
        assert torch.equal(a, call(seed=21))
        assert not torch.equal(a, call(generator=torch.Generator().manual_seed(22)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_parameters_dtype_is_the_samples_dtype(dtype):
    """Parameters of either dtype give samples of that dtype (not the default dtype, float64
    in the tests), drawn from uniforms of that dtype: the exponential draw equals
    -log1p(-u) / rate for u = torch.rand(..., dtype) from the same seed, to the last bit."""
    rate = torch.tensor([0.7, 2.3], dtype=dtype)
    z = exponential_rsample(rate, (1000,), seed=3)
    u = torch.rand((1000, 2), generator=torch.Generator().manual_seed(3), dtype=dtype)
    assert z.dtype == dtype and torch.equal(z, -torch.log1p(-u) / rate)
    g = gumbel_sample((1000,), dtype=dtype, seed=3)
    u = torch.rand(1000, generator=torch.Generator().manual_seed(3), dtype=dtype)
    assert g.dtype == dtype and torch.equal(g, -torch.log(-torch.log(u)))
    logits = torch.tensor([0.1, -0.4, 0.3], dtype=dtype)
    y = gumbel_softmax_rsample(logits, temperature=0.7, sample_shape=(1000,), seed=3)
    g = gumbel_sample((1000, 3), dtype=dtype, seed=3)
    assert y.dtype == dtype
    expected = torch.softmax((logits - torch.logsumexp(logits, -1) + g) / 0.7, -1)
    torch.testing.assert_close(y, expected, rtol=0, atol=4 * torch.finfo(dtype).eps)


def test_default_temperature_is_one_and_batches_keep_the_simplex_last():
    """temperature defaults to 1; with sample shape (5,) and logits (3, 4), y is (5, 3, 4) and
    sums to 1 over the last dimension, and the hard sample is one-hot there."""
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = gumbel_softmax_rsample(logits, sample_shape=(5,), seed=8)
    assert torch.equal(
        y, gumbel_softmax_rsample(logits, temperature=1.0, sample_shape=(5,), seed=8)
    )
    assert y.shape == (5, 3, 4)
    torch.testing.assert_close(y.sum(-1), torch.ones(5, 3, dtype=torch.float64), rtol=0, atol=1e-14)
    hard = gumbel_softmax_rsample(logits, sample_shape=(5,), seed=8, hard=True)
    assert torch.equal(hard.sum(-1), torch.ones(5, 3, dtype=torch.float64))
    assert torch.equal(hard.argmax(-1), y.argmax(-1))


def test_a_float64_temperature_keeps_float32_samples_float32():
    """The temperature is cast to the logits' dtype: float32 logits with a float64 temperature
    tensor of shape (1,) (not 0-d, which type promotion would ignore) give float32 samples,
    the values of the float32 temperature."""
    logits = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float32)
    t64 = torch.tensor([0.4], dtype=torch.float64)
    y64 = gumbel_softmax_rsample(logits=logits, temperature=t64, sample_shape=(5,), seed=3)
    y32 = gumbel_softmax_rsample(logits=logits, temperature=t64.float(), sample_shape=(5,), seed=3)
    assert y64.dtype == torch.float32 and torch.equal(y64, y32)
