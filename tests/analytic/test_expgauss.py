"""Closed forms of the exponential-Gaussian model, each against an independent route."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from scipy import integrate, optimize, stats

from analytic import expgauss as eg
from guides.expgauss import ExpGaussGuide
from ppl_models.expgauss import MAX_PLATE_NESTING, ExpGaussModel

# |x - theta| reaches 30 (and 60 at the corners).
X_GRID = [-30.0, -5.0, -1.0, 0.0, 0.3, 2.0, 10.0, 30.0]
THETA_GRID = [0.01, 0.5, 1.0, 5.0, 30.0]


def _pyro_batches(x, theta, phi, num_batches=20, particles=10_000):
    """Pyro Trace_ELBO in independent batches: per batch, the ELBO estimate and the gradients
    of the surrogate loss with respect to theta and phi (via log theta, log phi)."""
    model, guide = ExpGaussModel(theta), ExpGaussGuide(torch.full_like(x, phi))
    loss_fn = pyro.infer.Trace_ELBO(
        num_particles=particles, vectorize_particles=True, max_plate_nesting=MAX_PLATE_NESTING
    )(model, guide)
    values, d_theta, d_phi = [], [], []
    for _ in range(num_batches):
        model.zero_grad(), guide.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        values.append(-loss.item())
        # d(-loss)/d log theta = theta * d ELBO / d theta
        d_theta.append(-model.log_theta.grad.item() / theta)
        d_phi.append(-guide.log_phi.grad.item() / phi)
    return map(torch.tensor, (values, d_theta, d_phi))


def _within_4_se(batches: torch.Tensor, target: float) -> None:
    se = batches.std().item() / math.sqrt(len(batches))
    assert abs(batches.mean().item() - target) < 4 * se, (batches.mean().item(), target, se)


@pytest.mark.parametrize("x, theta, phi", [(1.0, 2.0, 2.0), (-0.7, 0.5, 3.0), (4.0, 0.3, 0.6)])
def test_elbo_equals_pyro_trace_elbo_monte_carlo(x, theta, phi):
    """2 x 10^5 vectorised particles in 20 batches; within 4 standard errors of the batch means."""
    values, _, _ = _pyro_batches(torch.tensor([x]), theta, phi)
    _within_4_se(values, eg.elbo(x, theta, phi).item())


@pytest.mark.parametrize("x, theta, phi", [(1.0, 0.7, 1.3), (-0.7, 0.5, 3.0)])
def test_elbo_grad_equals_mean_of_pyro_surrogate_gradients(x, theta, phi):
    """Trace_ELBO's reparameterised gradients, 20 batches of 10^4 particles, within 4 SE."""
    _, d_theta, d_phi = _pyro_batches(torch.tensor([x]), theta, phi)
    exact_theta, exact_phi = eg.elbo_grad(x, theta, phi)
    _within_4_se(d_theta, exact_theta.item())
    _within_4_se(d_phi, exact_phi.item())


def test_elbo_grad_equals_autograd_of_elbo():
    """Exact identity (rtol 1e-10) on a grid of x, theta, phi."""
    x = torch.tensor(X_GRID).view(-1, 1, 1)
    theta = torch.tensor(THETA_GRID, requires_grad=True).view(1, -1, 1)
    phi = torch.tensor([0.05, 0.8, 2.0, 40.0], requires_grad=True).view(1, 1, -1)
    d_theta, d_phi = torch.autograd.grad(eg.elbo(x, theta, phi).sum(), (theta, phi))
    exact_theta, exact_phi = eg.elbo_grad(x, theta.detach(), phi.detach())
    torch.testing.assert_close(exact_theta.sum((0, 2), keepdim=True), d_theta, rtol=1e-10, atol=0)
    torch.testing.assert_close(exact_phi.sum((0, 1), keepdim=True), d_phi, rtol=1e-10, atol=0)


def _log_evidence_by_quadrature(x: float, theta: float) -> float:
    """log int_0^inf theta e^{-theta z} N(x | z, 1) dz by adaptive quadrature, the integrand
    scaled by its maximum (at z = max(x - theta, 0)) so that tiny values keep full precision."""

    def log_f(z):
        return math.log(theta) - theta * z - 0.5 * (x - z) ** 2 - 0.5 * math.log(2 * math.pi)

    mode = max(x - theta, 0.0)
    upper = mode + 40.0  # the integrand has fallen by > e^{-800} beyond (curvature >= 1)
    value, _ = integrate.quad(
        lambda z: math.exp(log_f(z) - log_f(mode)),
        0.0,
        upper,
        points=[mode] if mode > 0 else None,
        epsabs=0.0,
        epsrel=1e-13,
        limit=200,
    )
    return log_f(mode) + math.log(value)


def test_log_evidence_equals_quadrature_and_bounds_the_elbo():
    """scipy quadrature, rtol 1e-8, on a grid with |x - theta| up to 60; ELBO < log p there."""
    phis = torch.tensor([0.05, 0.8, 2.0, 40.0])
    for x in X_GRID:
        for theta in THETA_GRID:
            exact = eg.log_evidence(x, theta).item()
            assert exact == pytest.approx(_log_evidence_by_quadrature(x, theta), rel=1e-8)
            bound = eg.elbo(x, theta, torch.cat([phis, eg.optimal_phi(x, theta).view(1)]))
            assert bool((bound < exact).all()), (x, theta)


def test_posterior_mean_equals_quadrature():
    """E[z | x] = int z g / int g over (0, inf) with g the posterior kernel exp(-(z - m)^2/2),
    by quadrature (rtol 1e-9), including the far tail m = x - theta = -35 and -1000."""
    for x, theta in [(1.0, 2.0), (3.0, 0.5), (-2.0, 2.9), (0.0, 7.0), (-30.0, 5.0), (0.1, 1e3)]:
        m = x - theta
        # scaled by the kernel's largest value on z >= 0 so that far tails keep precision
        shift = 0.5 * max(-m, 0.0) ** 2

        def g(z, m=m, shift=shift):
            return math.exp(-0.5 * (z - m) ** 2 + shift)

        upper = max(m, 0.0) + 40.0
        kw = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}
        mass, _ = integrate.quad(g, 0.0, upper, **kw)
        first, _ = integrate.quad(lambda z, g=g: z * g(z), 0.0, upper, **kw)
        assert eg.posterior_mean(x, theta).item() == pytest.approx(first / mass, rel=1e-9)


def test_gap_is_kl_to_the_exact_posterior():
    """log p - ELBO equals KL(q || truncated normal) by quadrature (rtol 1e-7)."""
    x, theta, phi = 0.8, 1.5, 1.7
    m = x - theta
    post = stats.truncnorm(a=-m, b=np.inf, loc=m, scale=1.0)
    q = stats.expon(scale=1 / phi)
    kl, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - post.logpdf(z)), 0, 60, limit=200)
    assert eg.kl_to_posterior(x, theta, phi).item() == pytest.approx(kl, rel=1e-7)


def test_optimal_phi_is_the_stationary_maximum():
    """dL/dphi = 0 at phi* (atol 1e-10 relative to the scale), and L(phi*) >= L on a grid."""
    x = torch.tensor(X_GRID).view(-1, 1)
    theta = torch.tensor(THETA_GRID).view(1, -1)
    phi = eg.optimal_phi(x, theta)
    _, d_phi = eg.elbo_grad(x, theta, phi)
    assert bool((d_phi.abs() * phi < 1e-10 * (1 + (x - theta).abs())).all())
    nearby = phi.unsqueeze(-1) * torch.logspace(-2, 2, 401)
    assert bool(
        (
            eg.elbo(x.unsqueeze(-1), theta.unsqueeze(-1), nearby)
            <= eg.elbo(x, theta, phi).unsqueeze(-1) + 1e-12
        ).all()
    )


def test_joint_optimum_is_a_stationary_maximum():
    """Both partial derivatives vanish (atol 1e-12), the Hessian is negative definite, and no
    point of a wide log grid does better."""
    for x in [0.05, 1.0, 3.0, 25.0]:
        theta, phi = eg.joint_optimum(torch.tensor([x]))
        for g in eg.elbo_grad(x, theta, phi):
            assert abs(g.item()) < 1e-12
        hessian = torch.autograd.functional.hessian(
            lambda t, p, x=x: eg.elbo(x, t, p), (theta[0], phi[0])
        )
        matrix = torch.tensor([[float(hessian[i][j]) for j in range(2)] for i in range(2)])
        assert bool((torch.linalg.eigvalsh(matrix) < 0).all())
        grid = theta * torch.logspace(-2, 2, 201)
        values = eg.elbo(x, grid.view(-1, 1), grid.view(1, -1))
        assert values.max().item() <= eg.elbo(x, theta, phi).item() + 1e-12


@pytest.mark.parametrize("x", [0.0, -1.5])
def test_joint_optimum_and_ml_theta_refuse_x_without_a_maximiser(x):
    """x <= 0: the ELBO and the likelihood increase towards theta -> inf; the error says so."""
    with pytest.raises(ValueError, match=r"only for x > 0.*infinity"):
        eg.joint_optimum(torch.tensor([x]))
    with pytest.raises(ValueError, match=r"only for x > 0"):
        eg.ml_theta(torch.tensor([x]))


def test_ml_theta_maximises_the_exact_evidence():
    """Autograd score of log_evidence ~ 0 at theta_ML, and scipy's bounded scalar optimiser on
    -log p over log theta finds the same point (rtol 1e-6)."""
    x = torch.tensor([0.05, 0.3, 1.0, 2.0, 10.0])
    theta_ml = eg.ml_theta(x)
    theta = theta_ml.clone().requires_grad_(True)
    (score,) = torch.autograd.grad(eg.log_evidence(x, theta).sum(), theta)
    assert bool((score.abs() * theta_ml < 1e-9).all())
    for xi, ti in zip(x.tolist(), theta_ml.tolist()):
        res = optimize.minimize_scalar(
            lambda u, xi=xi: -eg.log_evidence(xi, math.exp(u)).item(),
            bounds=(math.log(ti) - 3, math.log(ti) + 3),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert math.exp(res.x) == pytest.approx(ti, rel=1e-6)
    # variational EM is biased: theta* = 2/x differs from the MLE
    assert bool(((2.0 / x) > theta_ml).all())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: eg.elbo(float("nan"), 1.0, 1.0), "x must be finite"),
        (lambda: eg.elbo(1.0, 0.0, 1.0), "theta must be > 0"),
        (lambda: eg.elbo(1.0, 1.0, -2.0), "phi must be > 0, got -2.0"),
        (lambda: eg.elbo_grad(1.0, float("inf"), 1.0), "theta must be finite"),
        (lambda: eg.optimal_phi(1.0, -1.0), "theta must be > 0"),
        (lambda: eg.log_evidence(float("inf"), 1.0), "x must be finite"),
        (lambda: eg.joint_optimum(torch.tensor([1.0, float("nan")])), "x must be finite"),
        (lambda: eg.check_observations(torch.tensor([[1.0]])), r"shape \(N,\)"),
    ],
)
def test_bad_input_is_rejected_by_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("x, theta", [(1.0, 0.3), (2.5, 4.0), (0.7, 0.7), (3.0, 1e-3)])
def test_optimal_phi_equals_the_quadratic_root_in_python_floats(x, theta):
    """phi* = (sqrt(d^2 + 8) - d) / 2, d = x - theta (the positive root; 2 at x = 1, theta = 2),
    in plain float64 arithmetic: to 1e-14, so a single-precision constant (sqrt 8 rounded to
    float32, 3e-8 relative) fails."""
    d = x - theta
    expected = (math.sqrt(d * d + 8) - d) / 2
    got = eg.optimal_phi(torch.tensor([x], dtype=torch.float64),
                               torch.tensor([theta], dtype=torch.float64))  # fmt: skip
    assert got.item() == pytest.approx(expected, rel=1e-14)


# --- ml_theta's bracket, and the exact wording of every refusal ---


def test_the_score_is_negative_at_two_over_x_as_sampfords_bound_proves():
    """ml_theta brackets theta_ML in [lo, 2/x] on the strength of Sampford's bound (its
    docstring). Check both: the bound R(t) > (3t + sqrt(t^2 + 8))/4 on t in [-30, 30] by
    scipy's normal (log-space, so exact to ~1e-15 relative; the gap stays > 5e-8), and the
    score's sign at 2/x for x from 1e-6 to 1e6."""
    t = np.linspace(-30.0, 30.0, 60_001)
    mills = np.exp(stats.norm.logpdf(t) - stats.norm.logsf(t))
    assert (mills - (3 * t + np.sqrt(t * t + 8)) / 4).min() > 5e-8
    x = torch.logspace(-6, 6, 241, dtype=torch.float64)
    assert bool((eg._ml_score_sign(x, torch.log(2.0 / x)) < 0).all())


def test_ml_theta_one_step_and_its_budget_message():
    """max_iter = 1 is a valid budget (the check is >= 1): with rtol = 0.5 one halving of
    the bracket [2/x / 2, 2/x] suffices; with rtol = 1e-13 the error reports the bracket
    width log(2)/2 = 0.347 after that one halving (a width printed as hi + lo would be
    0.515 at x = 1.3)."""
    x = torch.tensor([1.3], dtype=torch.float64)
    assert eg.ml_theta(x, rtol=0.5, max_iter=1).item() == pytest.approx(1.2937, rel=1e-4)
    with pytest.raises(ValueError) as info:
        eg.ml_theta(x, max_iter=1)
    assert str(info.value) == (
        "ml_theta did not reach rtol=1e-13 in max_iter=1 bisection steps "
        "(bracket width 0.347 in log theta); raise max_iter"
    )


_NO_MAXIMISER = (
    "exists only for x > 0, got x = -1.5: for x <= 0 the objective keeps increasing as theta "
    "(and phi) -> infinity, i.e. as the prior on z collapses onto 0, and no finite theta "
    "attains its supremum"
)
_X2 = torch.tensor([0.5, -1.5], dtype=torch.float64)
_BIG = torch.tensor([1.0, 1e200], dtype=torch.float64)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: eg.joint_optimum(_X2), "the joint ELBO maximiser " + _NO_MAXIMISER),
        (lambda: eg.ml_theta(_X2), "the maximum-likelihood theta " + _NO_MAXIMISER),
        (lambda: eg.ml_theta(1.0, max_iter=True), "max_iter must be an integer >= 1, got True"),
        (lambda: eg.ml_theta(1.0, max_iter=2.5), "max_iter must be an integer >= 1, got 2.5"),
        (lambda: eg.ml_theta(math.nan), "x must be finite, got nan"),
        (lambda: eg.elbo_grad(math.nan, 1.0, 1.0), "x must be finite, got nan"),
        (lambda: eg.elbo_grad(1.0, 1.0, -2.0), "phi must be > 0, got -2.0"),
        (lambda: eg.elbo_grad(1.0, -3.0, 1.0), "theta must be > 0, got -3.0"),
        (lambda: eg.log_evidence(1.0, 0.0), "theta must be > 0, got 0.0"),
        (lambda: eg.posterior_mean(1.0, -0.5), "theta must be > 0, got -0.5"),
        (lambda: eg.posterior_mean(math.inf, 1.0), "x must be finite, got inf"),
        (lambda: eg.check_observations([1.0]), "x must be a floating-point tensor, got list"),
        (
            lambda: eg.check_observations(torch.tensor([1, 2])),
            "x must be a floating-point tensor, got torch.int64",
        ),
        (lambda: eg.check_observations(torch.tensor([1.0, math.nan])), "x must be finite, got nan"),
        (
            lambda: eg.joint_optimum(torch.tensor([1.0, 1e-310], dtype=torch.float64)),
            "the optimum 2/x is inf at x = 1e-310: it overflows torch.float64",
        ),
        (
            lambda: eg.ml_theta(torch.tensor([1.0, 1e-310], dtype=torch.float64)),
            "the starting point 2/x is inf at x = 1e-310: it overflows torch.float64",
        ),
        (
            lambda: eg.elbo(_BIG, 1.0, 1.0),
            "the ELBO is -inf at x = 1e+200, theta = 1.0, phi = 1.0: it overflows torch.float64",
        ),
        (
            lambda: eg.elbo(torch.tensor([1.0, 1e20], dtype=torch.float32), 1.0, 1.0),
            "the ELBO is -inf at x = 1.0000000200408773e+20, theta = 1.0, phi = 1.0: it "
            "overflows torch.float32 (float64 reaches further)",
        ),
        (
            lambda: eg.log_evidence(-_BIG, torch.tensor([0.5, 2.0], dtype=torch.float64)),
            "log p(x) is -inf at x = -1e+200, theta = 2.0: it overflows torch.float64",
        ),
    ],
)
def test_every_refusal_names_the_field_and_the_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn", [eg.elbo, eg.elbo_grad, eg.kl_to_posterior])
def test_python_numbers_take_the_dtype_of_x(fn, dtype):
    """theta and phi given as Python floats are converted in x's dtype, so the result has
    that dtype and equals the all-tensor call bit for bit; in particular float32 x is not
    promoted to the default dtype (float64 in the tests)."""
    x = torch.tensor([0.4, 1.7], dtype=dtype)
    as_numbers = fn(x, 0.3, 0.7)
    as_tensors = fn(x, torch.tensor(0.3, dtype=dtype), torch.tensor(0.7, dtype=dtype))
    for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (as_numbers, as_tensors))):
        assert a.dtype == dtype and torch.equal(a, b)
    mean = eg.posterior_mean(x, 0.3)
    assert mean.dtype == dtype
    assert torch.equal(mean, eg.posterior_mean(x, torch.tensor(0.3, dtype=dtype)))
    value = eg.log_evidence(x, 0.3)
    assert value.dtype == dtype and torch.equal(
        value, eg.log_evidence(x, torch.tensor(0.3, dtype=dtype))
    )


def test_lists_of_parameters_take_the_dtype_of_x_too():
    """A list of thetas is a 1-D tensor, which (unlike a 0-dim one) would promote float32 x to
    float64 if it were made in the default dtype instead of x's."""
    x = torch.tensor([0.4, 1.7], dtype=torch.float32)
    for value in (eg.elbo(x, [0.3, 0.5], [0.7, 0.9]), eg.log_evidence(x, [0.3, 0.5]),
                  eg.posterior_mean(x, [0.3, 0.5])):  # fmt: skip
        assert value.dtype == torch.float32


def test_integer_observations_are_converted_to_the_default_dtype():
    x = torch.tensor([1, 3])
    assert torch.equal(eg.elbo(x, 0.3, 0.7), eg.elbo(x.double(), 0.3, 0.7))


def test_the_first_non_positive_parameter_is_the_one_named():
    with pytest.raises(ValueError) as err:
        eg.elbo(torch.tensor([1.0, 2.0]), [0.5, -1.0], 1.0)
    assert str(err.value) == "theta must be > 0, got -1.0"


def test_ml_theta_spans_the_float64_range():
    """At x = 1e300 theta_ML = 1/x = 1e-300 (the bracket is grown down from 2/x only as far
    as needed: 200 halvings would underflow there); at x = 1.5e-308 the start 2/x = 1.3e308
    is still a float64 and theta_ML is about 2/x (for x -> 0+ the posterior mean of z tends
    to 1/theta's bound x/2); x = 0.7 in the same call is solved as alone."""
    got = eg.ml_theta(torch.tensor([1e300, 1.5e-308, 0.7], dtype=torch.float64))
    assert got[0].item() == pytest.approx(1e-300, rel=1e-10)
    assert got[1].item() == pytest.approx(2 / 1.5e-308, rel=1e-10)
    alone = eg.ml_theta(torch.tensor([0.7], dtype=torch.float64))
    assert got[2].item() == pytest.approx(alone.item(), rel=1e-12)
