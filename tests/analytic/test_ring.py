"""The ring mixture's closed forms against torch.distributions, Monte Carlo, quadrature, brute
force; EM's monotonicity, fixed point and recovery. float64 throughout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from analytic import ring

R = 10.0


def _points(seed=0, n=40, scale=6.0):
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)).double()


def _torch_mixture(means, weights):
    return MixtureSameFamily(Categorical(probs=weights), Independent(Normal(means, 1.0), 1))


def _weights(K, seed=1):
    return torch.distributions.Dirichlet(torch.full((K,), 2.5, dtype=torch.float64)).sample()


def test_ring_means_are_on_the_circle_evenly_spaced():
    m = ring.ring_means(7, 2.5)
    torch.testing.assert_close(m.norm(dim=-1), torch.full((7,), 2.5, dtype=torch.float64))
    angles = torch.atan2(m[:, 1], m[:, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles, 2 * math.pi * torch.arange(7).double() / 7)


@pytest.mark.parametrize("radius", [10.0, 1.0, 0.0])
def test_log_density_equals_torch_mixture_same_family(radius):
    """Against torch's MixtureSameFamily of 2-D unit Gaussians, uniform and unequal weights:
    the 2-D normaliser 1/(2 pi) (the source's 1/sqrt(2 pi) is off by log sqrt(2 pi) = 0.92)."""
    torch.manual_seed(1)
    means, X = ring.ring_means(10, radius), _points()
    for weights in (None, _weights(10)):
        w = torch.full((10,), 0.1, dtype=torch.float64) if weights is None else weights
        expected = _torch_mixture(means, w).log_prob(X)
        torch.testing.assert_close(
            ring.log_density(X, means, weights), expected, rtol=1e-12, atol=0
        )


def test_log_density_is_finite_far_from_the_ring():
    X = torch.tensor([[1e4, 0.0], [0.0, -3e5]], dtype=torch.float64)
    out = ring.log_density(X, ring.ring_means(10, R))
    assert torch.isfinite(out).all()  # a plain log of a sum of exps would be -inf
    # rearranged: |x - mu_k|^2 = |x|^2 + R^2 - 2 x.mu_k, so the logsumexp is over x.mu_k only
    means = ring.ring_means(10, R)
    expected = (-math.log(2 * math.pi) - 0.5 * (X.square().sum(-1) + R**2) - math.log(10)
                + torch.logsumexp(X @ means.T, dim=-1))  # fmt: skip
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


def test_posterior_probs_are_bayes_rule():
    torch.manual_seed(2)
    means, X, w = ring.ring_means(5, 1.5), _points(scale=2.0), _weights(5)
    joint = w * torch.exp(Independent(Normal(means, 1.0), 1).log_prob(X.unsqueeze(1)))
    expected = joint / joint.sum(-1, keepdim=True)
    torch.testing.assert_close(ring.posterior_probs(X, means, w), expected, rtol=1e-10, atol=1e-14)


def test_elbo_uniform_is_the_expectation_under_uniform_q():
    """L1 = E_q[log p(x, z) - log q(z)] with q uniform: the sum over k written out (the exact
    expectation of a K-point q), and a Monte Carlo estimate within 4 standard errors."""
    means, X = ring.ring_means(10, R), _points(n=5)
    log_joint = math.log(0.1) + Independent(Normal(means, 1.0), 1).log_prob(X.unsqueeze(1))
    exact = (log_joint - math.log(0.1)).mean(-1)
    torch.testing.assert_close(ring.elbo_uniform(X, means), exact, rtol=1e-12, atol=0)
    z = torch.randint(10, (200_000,), generator=torch.Generator().manual_seed(3))
    draws = (log_joint[:, z] - math.log(0.1)).T
    se = draws.std(0) / math.sqrt(200_000)
    assert ((draws.mean(0) - exact).abs() < 4 * se).all()


def test_elbo_uniform_is_below_log_density_and_the_gap_is_kl_to_the_posterior():
    """log p(x) - L1 = KL(uniform || p(z | x)) >= 0, computed from the responsibilities."""
    means, X = ring.ring_means(10, 3.0), _points(scale=4.0)
    gap = ring.log_density(X, means) - ring.elbo_uniform(X, means)
    r = ring.posterior_probs(X, means)
    kl = (0.1 * (math.log(0.1) - r.log())).sum(-1)
    torch.testing.assert_close(gap, kl, rtol=1e-10, atol=1e-12)
    assert (gap > 0).all()


@pytest.mark.parametrize("K", [2, 3, 10, 5000])
def test_elbo_uniform_equals_its_limit_for_every_k_from_2(K):
    """sum_k mu_k = 0 on the ring, so L1 = -log 2 pi - (|x|^2 + R^2)/2 for every K >= 2 (the
    source has one component's log N instead of the average)."""
    X = _points()
    torch.testing.assert_close(
        ring.elbo_uniform(X, ring.ring_means(K, R)),
        ring.elbo_uniform_limit(X, R),
        rtol=1e-12,
        atol=1e-9,
    )


def test_log_density_tends_to_the_ring_density():
    """K = 5,000 against the limit (the Riemann sum of a periodic analytic integrand converges
    faster than any power of 1/K: the difference is at rounding level)."""
    X = _points(scale=8.0)
    torch.testing.assert_close(
        ring.log_density(X, ring.ring_means(5000, R)),
        ring.log_density_limit(X, R),
        rtol=1e-12,
        atol=1e-10,
    )


def test_ring_density_integrates_to_one_and_matches_scipy_bessel():
    """2-D quadrature of p_inf in polar coordinates (scipy.integrate.quad over r, the angle
    integral is 2 pi): 1 to 1e-8; its Bessel factor against scipy.special.i0 pointwise."""

    def radial(r):
        x = torch.tensor([[r, 0.0]], dtype=torch.float64)
        return 2 * math.pi * r * math.exp(ring.log_density_limit(x, R).item())

    total, error = integrate.quad(radial, 0, R + 40, points=[R], limit=200)
    assert abs(total - 1) < 1e-8 and error < 1e-9
    X = _points(n=10, scale=1.0)
    t = R * X.norm(dim=-1).numpy()
    expected = (
        -math.log(2 * math.pi) - 0.5 * (X.square().sum(-1).numpy() + R**2) + np.log(special.i0(t))
    )
    np.testing.assert_allclose(ring.log_density_limit(X, R).numpy(), expected, rtol=1e-12)


def test_gap_in_the_limit_is_log_i0():
    X = _points()
    gap = ring.log_density_limit(X, R) - ring.elbo_uniform_limit(X, R)
    np.testing.assert_allclose(gap.numpy(), np.log(special.ive(0, R * X.norm(dim=-1).numpy()))
                               + R * X.norm(dim=-1).numpy(), rtol=1e-12)  # fmt: skip
    big = torch.tensor([[1e3, 0.0]], dtype=torch.float64)  # R|x| = 1e4: I0 overflows float64
    assert torch.isfinite(ring.log_density_limit(big, R)).all()


# ---- EM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    weights = torch.tensor([0.05, 0.08, 0.1, 0.12, 0.15, 0.1, 0.09, 0.11, 0.1, 0.1]).double()
    X, z = ring.sample(2000, ring.ring_means(10, R), weights, seed=0)
    return X, z, weights


def test_sample_draws_the_mixture(data):
    """Component frequencies within 4 binomial s.e. of the weights; residuals unit variance."""
    X, z, weights = data
    freq = torch.bincount(z, minlength=10).double() / 2000
    assert ((freq - weights).abs() < 4 * (weights * (1 - weights) / 2000).sqrt()).all()
    resid = X - ring.ring_means(10, R)[z]
    assert abs(resid.var().item() - 1) < 4 * math.sqrt(2 / 4000)


def test_em_log_likelihood_never_decreases_and_is_reported_right(data):
    X, _, _ = data
    result = ring.em(X, 10, num_init=3, seed=1)
    h = result.history
    assert (h[1:] >= h[:-1] - 1e-9 * h.abs().max()).all() and result.converged
    value = ring.log_density(X, result.means, result.weights).sum()
    torch.testing.assert_close(result.log_likelihood, value, rtol=1e-14, atol=0)
    assert h[-1] == result.log_likelihood


def test_em_fixed_point_has_zero_gradient(data):
    """At EM's fixed point, d loglik / d mu = 0 and the gradient in the weights is the same for
    every k (a Lagrange multiplier: N, the sum constraint's), by autograd; a step away is not."""
    X, _, _ = data
    result = ring.em(X, 10, num_init=2, tol=0.0, max_iter=3000)  # to float64's resolution
    for shift in (0.0, 0.05):
        means = (result.means + shift).requires_grad_()
        weights = result.weights.clone().requires_grad_()
        ring.log_density(X, means, weights).sum().backward()
        if shift == 0:
            assert means.grad.abs().max() < 1e-5
            torch.testing.assert_close(
                weights.grad, torch.full((10,), 2000.0).double(), rtol=1e-6, atol=0
            )
        else:
            assert means.grad.abs().max() > 1


def test_em_recovers_the_truth_at_radius_10(data):
    """Well-separated components: each mean within 4 s.e. (1/sqrt(N pi_k) per coordinate) of
    the truth, each weight within 4 binomial s.e. (labels matched to the nearest true mean)."""
    X, _, weights = data
    result = ring.em(X, 10)
    truth = ring.ring_means(10, R)
    order = torch.cdist(truth, result.means).argmin(-1)
    assert sorted(order.tolist()) == list(range(10))
    se_mean = (2000 * weights).rsqrt().unsqueeze(-1)
    assert ((result.means[order] - truth).abs() < 4 * se_mean).all()
    se_w = (weights * (1 - weights) / 2000).sqrt()
    assert ((result.weights[order] - weights).abs() < 4 * se_w).all()
    assert result.log_likelihood > ring.log_density(X, truth, weights).sum()  # ML beats truth


def test_em_step_matches_its_formulas():
    """One step by hand: responsibilities, then weighted means and weights."""
    X = _points(n=30, scale=2.0)
    means, weights = ring.ring_means(3, 1.3), torch.tensor([0.2, 0.3, 0.5]).double()
    new_means, new_weights, before = ring.em_step(X, means, weights)
    r = ring.posterior_probs(X, means, weights)
    torch.testing.assert_close(new_weights, r.mean(0), rtol=1e-13, atol=0)
    torch.testing.assert_close(new_means, (r.T @ X) / r.sum(0, keepdim=True).T, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        before, ring.log_density(X, means, weights).sum(), rtol=1e-14, atol=0
    )


def test_em_best_of_starts_beats_every_single_start(data):
    X, _, _ = data
    best = ring.em(X, 10, num_init=3, seed=5)
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        init = (ring.kmeans_plus_plus(X, 10, gen), None)
        assert ring.em(X, 10, init=init).log_likelihood <= best.log_likelihood


M2 = ring.ring_means(2, 1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ring.ring_means(0, 1.0), "num_components must be an integer >= 1, got 0"),
        (lambda: ring.ring_means(3, -1.0), "radius must be a finite number >= 0, got -1.0"),
        (lambda: ring.ring_means(3, float("nan")), "radius must be a finite number >= 0"),
        (lambda: ring.log_density(torch.zeros(3), M2), "X must have shape (N, 2)"),
        (lambda: ring.log_density([[0.0, 1.0]], M2), "X must be a torch tensor"),
        (
            lambda: ring.log_density(torch.tensor([[0.0, float("nan")]]), M2),
            "X must be finite, got nan at [0, 1]",
        ),
        (
            lambda: ring.log_density(torch.zeros(1, 2), M2, [0.5, 0.6]),
            "weights must be >= 0 and sum to 1",
        ),
        (lambda: ring.log_density(torch.zeros(1, 2), M2, [1.0]), "weights must have shape (2,)"),
        (lambda: ring.em(torch.zeros(3, 2), 4), "X has 3 points, fewer than num_components=4"),
        (lambda: ring.em(torch.zeros(5, 2), 2, tol=-1.0), "tol must be a finite number >= 0"),
        (lambda: ring.em(torch.zeros(5, 2), 2, num_init=0), "num_init must be an integer >= 1"),
        (lambda: ring.em(torch.zeros(5, 2), 2, seed=-1), "seed must be an integer in [0, 2**63)"),
        (lambda: ring.sample(0, M2), "num_samples must be an integer >= 1"),
        (lambda: ring.log_density_limit(torch.zeros(3), 1.0), "X must have shape (N, 2)"),
        (lambda: ring.elbo_uniform_limit(torch.zeros(3), 1.0), "X must have shape (N, 2)"),
        (
            lambda: ring.elbo_uniform_limit(torch.zeros(1, 2), -2.0),
            "radius must be a finite number >= 0, got -2.0",
        ),
        (
            lambda: ring.em(torch.zeros(5, 2), 2, init=(torch.zeros(2), None)),
            "init means must have shape (N, 2)",
        ),
    ],
)
def test_bad_input_gets_one_clear_error(call, message):
    """Each message starts with the field's name as the user spelt it (X, not x)."""
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: ring.em(torch.zeros(5, 2), True),
            "num_components must be an integer >= 1, got True",
        ),
        (
            lambda: ring.em(torch.zeros(5, 2), 2, max_iter=0),
            "max_iter must be an integer >= 1, got 0",
        ),
        (
            lambda: ring.em(torch.zeros(5, 2), 2, init=(torch.zeros(3, 2), None)),
            "init means must have shape (2, 2), got (3, 2)",
        ),
        (lambda: ring.em(torch.zeros(5), 2), "X must have shape (N, 2) with N >= 1, got (5,)"),
        (
            lambda: ring.em(torch.zeros(5, 2), 2, tol=True),
            "tol must be a finite number >= 0, got True",
        ),
        (
            lambda: ring.em(torch.zeros(5, 2), 2, tol=math.inf),
            "tol must be a finite number >= 0, got inf",
        ),
        (
            lambda: ring.sample(3, torch.zeros(3)),
            "means must have shape (N, 2) with N >= 1, got (3,)",
        ),
    ],
)
def test_em_and_sample_refusals_word_for_word(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_em_from_given_weights_takes_one_exact_step():
    """init = (means, non-uniform weights), max_iter = 1: the result is one em_step from
    exactly those weights (not uniform ones), and a run stopped by max_iter says it did not
    converge; N = K points are enough."""
    X = torch.tensor([[0.0, 0.0], [3.0, 0.5], [0.2, 2.0], [2.5, 2.5]])
    means, weights = ring.ring_means(2, 1.5), torch.tensor([0.8, 0.2])
    result = ring.em(X, 2, max_iter=1, init=(means, weights))
    step_means, step_weights, before = ring.em_step(X, means, weights)
    assert torch.equal(result.means, step_means) and torch.equal(result.weights, step_weights)
    assert result.history[0].item() == before.item() and result.converged is False
    assert ring.em(X[:2], 2, max_iter=3, num_init=1).means.shape == (2, 2)


def test_em_stops_at_the_first_gain_below_tolerance_and_says_so():
    """Every iteration but the last gained more than tol * |log-likelihood|, the last at most
    that, and ``converged`` is True (a bool); float32 data give float32 weights."""
    X, _ = ring.sample(400, ring.ring_means(3, 2.0), seed=1)
    tol = 1e-7
    result = ring.em(X, 3, tol=tol, num_init=1)
    history = result.history[:-1]  # the last entry is the final log-likelihood
    gains = torch.diff(history)
    assert result.converged is True
    assert bool((gains[:-1] > tol * history[1:-1].abs()).all())
    assert gains[-1].item() <= tol * abs(history[-1].item())
    assert ring.em(X.float(), 3, max_iter=2, num_init=1).weights.dtype == torch.float32


def test_em_measures_each_gain_against_the_current_log_likelihood():
    """The tolerance is relative to the log-likelihood *now*, |L_k|, not to an earlier one.
    From a run to the float fixed point (tol = 0), pick the first tol on a log grid where the
    two rules stop at different iterations (|L_1| = 1517 against |L_k| -> 1493 here: the
    rule on |L_1| stops one iteration early), and check that EM stops where the rule on |L_k|
    first holds."""
    X, _ = ring.sample(400, ring.ring_means(3, 2.0), seed=1)
    L = ring.em(X, 3, tol=0.0, max_iter=300, num_init=1).history[:-1]
    gains = torch.diff(L)

    def first_stop(tol, scale):
        return next(k for k in range(1, len(L)) if gains[k - 1] <= tol * scale(k))

    for tol in torch.logspace(-8, -2, 200).tolist():
        now = first_stop(tol, lambda k: L[k].abs())
        first = first_stop(tol, lambda k: L[1].abs())
        if now != first:
            break
    assert first < now
    result = ring.em(X, 3, tol=tol, max_iter=300, num_init=1)
    assert result.converged is True and len(result.history) == now + 2  # L_0..L_now, final


def test_kmeans_plus_plus_uses_its_generator_and_handles_identical_points():
    """The same generator seed, the same centres (the global RNG is not used); on identical
    points the draws fall back to uniform and still return K rows."""
    X, _ = ring.sample(200, ring.ring_means(4, 3.0), seed=2)
    torch.manual_seed(123)
    a = ring.kmeans_plus_plus(X, 4, torch.Generator().manual_seed(7))
    torch.manual_seed(456)
    b = ring.kmeans_plus_plus(X, 4, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    same = ring.kmeans_plus_plus(torch.ones(6, 2), 3, torch.Generator().manual_seed(0))
    assert torch.equal(same, torch.ones(3, 2))


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: ring.log_density(torch.zeros(0, 2), M2),
            "X must have shape (N, 2) with N >= 1, got (0, 2)",
        ),
        (
            lambda: ring.log_density(torch.zeros(1, 2), torch.zeros(2)),
            "means must have shape (N, 2) with N >= 1, got (2,)",
        ),
        (
            lambda: ring.log_density(torch.zeros(1, 2), M2, [-0.5, 1.5]),
            "weights must be >= 0 and sum to 1, got [-0.5, 1.5]",
        ),
        (
            lambda: ring.sample(3, [[0.0, 1.0]]),
            "means must be a torch tensor of shape (N, 2), got list",
        ),
        (lambda: ring.ring_means(True, 1.0), "num_components must be an integer >= 1, got True"),
    ],
)
def test_ring_refusals_word_for_word(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_float32_in_float32_out_and_integer_points_accepted():
    """float32 points and means give float32 densities, posteriors, ELBOs, samples and
    weights (not the default dtype, float64 in the tests); ring_means honours its dtype; a zero
    weight and a single component are valid; integer points are converted."""
    means = ring.ring_means(3, 2.0, dtype=torch.float32)
    assert means.dtype == torch.float32
    angle = 2 * math.pi * torch.arange(3, dtype=torch.float32) / 3
    assert torch.equal(means, 2.0 * torch.stack([angle.cos(), angle.sin()], -1))
    X, _ = ring.sample(50, means, seed=1)
    assert X.dtype == torch.float32
    for value in (
        ring.log_density(X, means),
        ring.log_density(X, means, [0.0, 0.5, 0.5]),
        ring.posterior_probs(X, means),
        ring.elbo_uniform(X, means),
        ring.em(X, 3, max_iter=2, num_init=1).weights,
    ):
        assert value.dtype == torch.float32
    assert ring.ring_means(1, 1.0).shape == (1, 2)
    points = torch.tensor([[0, 1], [2, -1]])
    torch.testing.assert_close(ring.log_density(points, M2), ring.log_density(points.double(), M2))


def test_sample_is_the_mean_plus_noise_from_its_own_generator():
    """x = mu_z + eps with z and then eps drawn from torch.Generator().manual_seed(seed) (the
    default seed 0): the same numbers whatever the global RNG holds."""
    means, w = ring.ring_means(4, 3.0), torch.tensor([0.1, 0.2, 0.3, 0.4])
    torch.manual_seed(99)
    X, z = ring.sample(30, means, w)
    gen = torch.Generator().manual_seed(0)
    z_ref = torch.multinomial(w, 30, replacement=True, generator=gen)
    assert torch.equal(z, z_ref)
    assert torch.equal(X, means[z_ref] + torch.randn(30, 2, generator=gen))


def test_kmeans_plus_plus_first_centre_is_any_point_and_no_centre_is_chosen_twice():
    """The first centre is uniform over all N = 50 points: 200 seeds hit at least 40 distinct
    points (expected 49.1; the draw is over every point, not the first few). Points within
    0.05 of each other (squared distances summing to far less than 1) still get weights
    proportional to d^2, so a chosen point (d = 0) is never drawn again."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 2, generator=g, dtype=torch.float64)
    first = {int(torch.cdist(ring.kmeans_plus_plus(X, 1, torch.Generator().manual_seed(s)),
                             X).argmin()) for s in range(200)}  # fmt: skip
    assert len(first) >= 40
    tight = 0.01 * torch.randn(6, 2, generator=g, dtype=torch.float64)
    for s in range(20):
        centres = ring.kmeans_plus_plus(tight, 4, torch.Generator().manual_seed(s))
        assert torch.unique(centres, dim=0).shape[0] == 4


def test_em_history_starts_at_the_seeding_with_uniform_weights_and_stops_at_a_fixed_point():
    """history[0] is the log-likelihood of the k-means++ means with weights 1/K, by
    torch.distributions (1e-12); restarted from its own converged result, EM stops after two
    iterations (the first whose gain is <= tol * |log-likelihood|), so history has 3 entries."""
    X = ring.sample(300, ring.ring_means(5, 4.0), seed=1)[0]
    result = ring.em(X, 5, num_init=1, seed=3)
    means = ring.kmeans_plus_plus(X, 5, torch.Generator().manual_seed(3))
    mixture = MixtureSameFamily(Categorical(torch.full((5,), 0.2, dtype=torch.float64)),
                                Independent(Normal(means, 1.0), 1))  # fmt: skip
    assert result.history[0].item() == pytest.approx(mixture.log_prob(X).sum().item(), rel=1e-12)
    again = ring.em(X, 5, init=(result.means, result.weights))
    assert again.converged and again.history.shape == (3,)


def test_float32_means_are_read_in_the_datas_float64():
    """Means given in float32 (a user's tensors) with float64 data: the density and an EM
    start read them as float64, giving exactly what their float64 values give."""
    X = ring.sample(50, ring.ring_means(4, 3.0), seed=2)[0]
    means32 = ring.ring_means(4, 3.0).float()
    torch.testing.assert_close(ring.log_density(X, means32),
                               ring.log_density(X, means32.double()), rtol=0, atol=0)  # fmt: skip
    weights = torch.full((4,), 0.25, dtype=torch.float64)
    started = ring.em(X, 4, init=(means32, weights), max_iter=3)
    same = ring.em(X, 4, init=(means32.double(), weights), max_iter=3)
    assert started.means.dtype == torch.float64 and torch.equal(started.means, same.means)
