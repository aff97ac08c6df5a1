"""The bad-input battery of the Python API (issue #13): every argument outside a function's
domain raises one ``ValueError`` naming the argument and the value -- never a TypeError from
deep inside, never a NaN, -inf or a silently wrong number. Inputs a user may reasonably pass
(plain lists, float32 or integer tensors) are converted instead and give the float64 answer.

The command-line battery is ``tests/vilab/test_bad_input.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from analytic import earthquake as eq
from analytic import expgauss as eg
from analytic import ring
from inference.estimators import get_elbo
from inference.stl import StickingTheLanding
from ppl_models.earthquake import simulate

HP = eq.Hyperparameters(3, mixing=(0.2, 0.3, 0.5), tau=0.5, rho=0.01, alpha=2.0, beta=0.3)
X, S, *_ = simulate(HP, 30, seed=1)
Q = eq.cavi(X, S, HP, num_init=1, max_iter=20).q
ONE = torch.tensor([1.5], dtype=torch.float64)


def _field(name, value):
    return Q._replace(**{name: value})


CASES = [
    # -- earthquake: the variational parameters -----------------------------------------------
    (
        "q-loc-nan",
        lambda: eq.elbo(X, S, HP, _field("loc", Q.loc.clone().fill_(math.nan))),
        "q.loc must be finite, got nan",
    ),
    (
        "q-precision-inf",
        lambda: eq.elbo(X, S, HP, _field("precision", Q.precision + math.inf)),
        "q.precision must be finite, got inf",
    ),
    (
        "q-rate-inf",
        lambda: eq.elbo(X, S, HP, _field("rate", Q.rate + math.inf)),
        "q.rate must be finite, got inf",
    ),
    (
        "q-concentration-zero",
        lambda: eq.elbo(X, S, HP, _field("concentration", Q.rate * 0)),
        "q.concentration must be > 0",
    ),
    (
        "q-probs-nan",
        lambda: eq.elbo(X, S, HP, _field("probs", Q.probs * math.nan)),
        "q.probs must be finite, got nan",
    ),
    (
        "q-probs-rows",
        lambda: eq.elbo(X, S, HP, _field("probs", Q.probs * 2)),
        "q.probs must be non-negative with rows summing to 1",
    ),
    (
        "q-loc-list",
        lambda: eq.elbo(X, S, HP, _field("loc", Q.loc.tolist())),
        "q.loc must be a tensor, got list",
    ),
    ("q-not-mean-field", lambda: eq.elbo(X, S, HP, tuple(Q)), "q must be a MeanField"),
    (
        "q-wrong-shape",
        lambda: eq.elbo(X, S, HP, _field("loc", Q.loc[:2])),
        r"q.loc must have shape \(3, 2\)",
    ),
    (
        "cavi-init-nan",
        lambda: eq.cavi(X, S, HP, init=_field("rate", Q.rate * math.nan)),
        "q.rate must be finite",
    ),
    # -- earthquake: the data -------------------------------------------------------------------
    ("X-huge", lambda: eq.elbo(X * 1e200, S, HP, Q), r"X must be finite with \|coordinates\|"),
    (
        "X-inf",
        lambda: eq.cavi(X.index_fill(0, torch.tensor([4]), math.inf), S, HP),
        "first at index 4",
    ),
    ("S-beyond-2**53", lambda: eq.elbo(X, S * 1e300, HP, Q), r"S must hold integers in \[0, 2"),
    ("S-negative", lambda: eq.cavi(X, -S - 1, HP), r"S must hold integers.*-"),
    ("S-fraction", lambda: eq.cavi(X, S + 0.5, HP), r"S must hold integers"),
    ("X-strings", lambda: eq.cavi([["a", "b"]], [1], HP), "X must be an array of numbers"),
    ("X-complex", lambda: eq.cavi(X.to(torch.complex128), S, HP), "X must be real"),
    ("X-shape", lambda: eq.cavi(X[:, :1], S, HP), r"shape \(N, 2\)"),
    ("X-S-lengths", lambda: eq.elbo(X, S[:-1], HP, Q), "same length"),
    ("check-data-list", lambda: eq.check_data(X.tolist(), S), "X must be a tensor, got list"),
    # -- earthquake: hyperparameters and options --------------------------------------------------
    ("hp-tau-text", lambda: eq.Hyperparameters(3, tau="abc"), "tau must be a finite number > 0"),
    ("hp-tau-none", lambda: eq.Hyperparameters(3, tau=None), "tau must be.*None"),
    ("hp-tau-bool", lambda: eq.Hyperparameters(3, tau=True), "tau must be.*True"),
    ("hp-rho-negative", lambda: eq.Hyperparameters(3, rho=-1.0), "rho must be.*-1.0"),
    ("hp-alpha-nan", lambda: eq.Hyperparameters(3, alpha=math.nan), "alpha must be.*nan"),
    ("hp-beta-tensor", lambda: eq.Hyperparameters(3, beta=torch.ones(2)), "beta must be"),
    ("hp-nu-number", lambda: eq.Hyperparameters(3, nu=5), "nu must be 2 finite numbers, got 5"),
    ("hp-nu-three", lambda: eq.Hyperparameters(3, nu=(1, 2, 3)), "nu must be 2 finite numbers"),
    ("hp-nu-inf", lambda: eq.Hyperparameters(3, nu=(0, math.inf)), "nu must be 2 finite"),
    ("hp-mixing-number", lambda: eq.Hyperparameters(3, mixing=1.0), "mixing must be 3 positive"),
    ("hp-mixing-text", lambda: eq.Hyperparameters(3, mixing="abc"), "mixing must be 3 positive"),
    ("hp-mixing-count", lambda: eq.Hyperparameters(3, mixing=(0.5, 0.5)), "3 entries"),
    ("hp-mixing-sum", lambda: eq.Hyperparameters(2, mixing=(0.5, 0.6)), "sum to 1"),
    ("hp-mixing-zero", lambda: eq.Hyperparameters(2, mixing=(0.0, 1.0)), "positive"),
    ("hp-k-float", lambda: eq.Hyperparameters(3.0), "num_clusters must be an integer"),
    ("hp-k-zero", lambda: eq.Hyperparameters(0), "num_clusters must be an integer >= 1, got 0"),
    (
        "hp-tau-overflow",
        lambda: eq.elbo(X * 1e140, S, eq.Hyperparameters(3, tau=1e300), Q),
        "the ELBO is -inf.*tau=1e[+]?300",
    ),
    ("cavi-max-iter-zero", lambda: eq.cavi(X, S, HP, max_iter=0), "max_iter must be.*0"),
    ("cavi-num-init-float", lambda: eq.cavi(X, S, HP, num_init=2.0), "num_init must be.*2.0"),
    ("cavi-tol-nan", lambda: eq.cavi(X, S, HP, tol=math.nan), "tol must be.*nan"),
    ("cavi-tol-text", lambda: eq.cavi(X, S, HP, tol="0"), "tol must be.*'0'"),
    ("cavi-seed-negative", lambda: eq.cavi(X, S, HP, seed=-1), "seed must be.*-1"),
    (
        "cavi-seed-huge",
        lambda: eq.cavi(X, S, HP, seed=2**70),
        "seed must be.*1180591620717411303424",
    ),
    # -- estimators ------------------------------------------------------------------------------
    ("get-elbo-unknown", lambda: get_elbo("best"), "estimator must be one of.*'best'"),
    ("get-elbo-list", lambda: get_elbo(["trace"]), r"estimator must be one of.*\['trace'\]"),
    (
        "get-elbo-unknown-option",
        lambda: get_elbo("trace", particles=4),
        r"unknown ELBO option\(s\) \['particles'\]; the options are \['num_particles'",
    ),
    (
        "get-elbo-vectorize-text",
        lambda: get_elbo("trace", vectorize_particles="yes"),
        "vectorize_particles must be True or False, got 'yes'",
    ),
    (
        "stl-unknown-option",
        lambda: StickingTheLanding(num_particle=2),
        r"unknown ELBO option\(s\) \['num_particle'\]",
    ),
    (
        "get-elbo-particles-zero",
        lambda: get_elbo("trace", num_particles=0),
        "num_particles must be an integer >= 1, got 0",
    ),
    (
        "get-elbo-particles-float",
        lambda: get_elbo("meanfield", num_particles=2.5),
        "num_particles must be.*2.5",
    ),
    (
        "get-elbo-plate-negative",
        lambda: get_elbo("enum", max_plate_nesting=-1),
        "max_plate_nesting must be.*-1",
    ),
    (
        "get-elbo-plate-float",
        lambda: get_elbo("enum", max_plate_nesting=1.5),
        "max_plate_nesting must be an integer >= 0, got 1.5",
    ),
    (
        "get-elbo-plate-bool",
        lambda: get_elbo("trace", max_plate_nesting=True),
        "max_plate_nesting must be.*True",
    ),
    (
        "stl-particles-negative",
        lambda: StickingTheLanding(num_particles=-1),
        "num_particles must be.*-1",
    ),
    ("stl-base-meanfield", lambda: get_elbo("stl", base="meanfield"), "cannot use base"),
    ("base-not-stl", lambda: get_elbo("trace", base="enum"), "'base' is an option of"),
    # -- exponential-Gaussian --------------------------------------------------------------------
    ("eg-ml-theta-max-iter-zero", lambda: eg.ml_theta(ONE, max_iter=0), "max_iter must be.*0"),
    ("eg-ml-theta-max-iter-short", lambda: eg.ml_theta(ONE, max_iter=3), "raise max_iter"),
    ("eg-ml-theta-rtol-zero", lambda: eg.ml_theta(ONE, rtol=0), "rtol must be.*0"),
    ("eg-ml-theta-rtol-nan", lambda: eg.ml_theta(ONE, rtol=math.nan), "rtol must be.*nan"),
    ("eg-ml-theta-x-negative", lambda: eg.ml_theta(-ONE), "exists only for x > 0"),
    ("eg-ml-theta-x-denormal", lambda: eg.ml_theta(ONE * 1e-310), "2/x is inf"),
    (
        "eg-joint-x-denormal",
        lambda: eg.joint_optimum(ONE * 1e-320),
        "^the optimum 2/x is inf at x = 1.5e-320: it overflows torch.float64$",
    ),
    (
        "eg-joint-x-negative",
        lambda: eg.joint_optimum(-ONE),
        "^the joint ELBO maximiser exists only for x > 0, got x = -1.5: ",
    ),
    ("eg-elbo-x-overflow", lambda: eg.elbo(ONE * 1e200, 1.0, 1.0), "the ELBO is -inf at x = 1.5e"),
    ("eg-elbo-phi-tiny", lambda: eg.elbo(ONE, 1.0, 1e-300), "the ELBO is -inf.*phi = 1e-300"),
    ("eg-elbo-theta-zero", lambda: eg.elbo(ONE, 0.0, 1.0), "theta must be > 0, got 0.0"),
    ("eg-elbo-x-nan", lambda: eg.elbo(ONE * math.nan, 1.0, 1.0), "x must be finite, got nan"),
    (
        "eg-grad-phi-tiny",
        lambda: eg.elbo_grad(ONE, 1.0, 1e-200),
        "dL/dphi is (inf|nan) at x = 1.5, theta = 1.0, phi = 1e-200",
    ),
    ("eg-evidence-overflow", lambda: eg.log_evidence(-ONE * 1e200, 1.0), "log p[(]x[)] is -inf"),
    (
        "eg-optimal-phi-overflow",
        lambda: eg.optimal_phi(torch.tensor([-1.7e308]), 1.7e308),
        "^x - theta is -inf at x = -1.7e[+]308, theta = 1.7e[+]308: it overflows torch.float64$",
    ),
    (
        "eg-optimal-phi-x-nan",
        lambda: eg.optimal_phi(ONE * math.nan, 1.0),
        "^x must be finite, got nan$",
    ),
    ("eg-optimal-phi-theta", lambda: eg.optimal_phi(ONE, -1.0), "^theta must be > 0, got -1.0$"),
    # -- ring mixture ----------------------------------------------------------------------------
    (
        "ring-l1-limit-X-shape",
        lambda: ring.elbo_uniform_limit(torch.ones(3, 3), 1.0),
        "^X must have shape [(]N, 2[)] with N >= 1, got [(]3, 3[)]$",
    ),
    (
        "ring-density-limit-X-shape",
        lambda: ring.log_density_limit(torch.ones(3, 3), 1.0),
        "^X must have shape [(]N, 2[)] with N >= 1, got [(]3, 3[)]$",
    ),
    ("eg-kl-overflow", lambda: eg.kl_to_posterior(ONE, 1.0, 1e-300), "the ELBO is -inf"),
]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_gets_one_value_error_naming_it(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    "convert",
    [lambda t: t.float(), lambda t: t.tolist(), lambda t: t.numpy()],
    ids=["float32", "list", "numpy"],
)
def test_elbo_and_cavi_accept_lists_arrays_and_float32_as_float64(convert):
    """Converted, not refused: the same float64 answer to the last bit (float32 holds these
    coordinates to ~1e-7 relative, so X is first rounded to float32 for every route)."""
    X32 = X.float().double()
    expected = eq.elbo(X32, S, HP, Q)
    assert eq.elbo(convert(X32), convert(S), HP, Q) == expected
    fit = eq.cavi(convert(X32), convert(S), HP, num_init=2)
    assert fit.elbo.dtype == torch.float64
    assert fit.elbo == eq.cavi(X32, S, HP, num_init=2).elbo


def test_integer_locations_are_converted_not_truncated():
    Xi = torch.round(X).long()
    assert eq.elbo(Xi, S.long(), HP, Q) == eq.elbo(Xi.double(), S, HP, Q)


def test_float32_cavi_keeps_its_elbo_non_decreasing_at_large_strengths():
    """With strengths ~3e4 the ELBO's terms are ~1e8; float32 accumulation lost up to 10^3
    nats between sweeps (issue #13). In float64 every sweep gains, to rounding (1e-9 relative
    of 1e8 is 0.1 nat, far above float64's 1e-8 nat rounding and far below 10^3)."""
    hp = eq.Hyperparameters(3, tau=0.5, rho=0.01, alpha=30.0, beta=1e-3)
    Xb, Sb, *_ = simulate(hp, 2000, seed=3)
    assert float(Sb.mean()) > 1e4
    fit = eq.cavi(Xb.float(), Sb.float(), hp, num_init=1)
    history = fit.elbo_history
    assert history.dtype == torch.float64
    assert (history.diff() >= -1e-9 * history.abs()[1:]).all()


@pytest.mark.parametrize(
    "x, theta",
    [(1e10, 1.0), (1e200, 1.0), (1.7e308, 1e-300), (-1e10, 1.0), (-1e200, 1.0),
     (-1e308, 7e307), (1.0, 1.0), (4.7, 1.0), (-2.7, 1.0)],
)  # fmt: skip
def test_optimal_phi_stays_positive_and_stationary_at_extreme_inputs(x, theta):
    """phi* solves phi^2 + d phi - 2 = 0 (d = x - theta); at |d| -> inf it is 2/d or |d|. The
    old route squared d and returned 0 or inf for |d| > 1e154."""
    phi = float(eg.optimal_phi(torch.tensor([x], dtype=torch.float64), theta))
    d = x - theta
    assert 0 < phi < math.inf
    # phi + d - 2/phi = 0, relative to the largest of its terms, to a few float64 epsilons
    residual = phi + d - 2.0 / phi
    assert abs(residual) <= 8 * 2.2e-16 * max(abs(phi), abs(d), abs(2.0 / phi))


@pytest.mark.parametrize("x", [1e-6, 1e-20, 1e-300])
def test_ml_theta_is_right_for_tiny_x(x):
    """For x -> 0+, theta_ML = 2/x + x + O(x^3) (the score 1/theta - E[z | x] vanishes where
    Laplace's continued fraction 2/t - 6/t^3 ... equals x, t = theta - x). The old bisection
    subtracted two nearly equal numbers and returned 1.3e8 at x = 1e-20 (and 0.99985 * 2/x
    at 1e-6); the relative error allowed here, 1e-12, is ~5000 float64 epsilons."""
    theta = float(eg.ml_theta(torch.tensor([x], dtype=torch.float64)))
    assert theta == pytest.approx(2.0 / x + x, rel=1e-12)


def test_optimal_phi_refuses_an_underflow_to_zero_where_subnormals_are_flushed():
    """phi* ~ 2/d is subnormal in float32 for d > 1.7e38; with flush-to-zero on it would be 0,
    which is refused, naming the first offending d (not the first element's)."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    try:
        with pytest.raises(ValueError, match=r"^optimal phi underflows to 0 at x - theta = 3\.0+5"):
            eg.optimal_phi(torch.tensor([6.0, 3e38], dtype=torch.float32), 1.0)
    finally:
        torch.set_flush_denormal(False)
    # without flushing the same input is fine: 0.372 and 6.7e-39 > 0
    phi = eg.optimal_phi(torch.tensor([6.0, 3e38], dtype=torch.float32), 1.0)
    assert bool((phi > 0).all())


def test_float_theta_takes_the_dtype_of_x_not_the_default():
    """A user on the default float32 passes float64 x and a Python float theta: theta is read in
    float64 (as x), so phi* is the float64 root (residual of phi^2 + d phi - 2 at 1e-15), not one
    computed from theta rounded to float32 (0.1 -> 0.10000000149, a 1e-9 change in phi*)."""
    x = torch.tensor([0.7, 3.0], dtype=torch.float64)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        phi = eg.optimal_phi(x, 0.1)
    finally:
        torch.set_default_dtype(previous)
    assert phi.dtype == torch.float64
    d = x - 0.1
    torch.testing.assert_close(phi * phi + d * phi, torch.full_like(phi, 2.0), rtol=1e-15, atol=0)


def test_update_rates_computes_in_float64_from_float32_strengths():
    """S given in float32 is converted before the sums (strengths ~1e4 summed in float32 lose
    ~1e-3 relative; the rates here must match the float64 route to 1e-12)."""
    probs = Q.probs
    exact = eq.update_rates(S, probs, HP)
    converted = eq.update_rates(S.float(), probs, HP)
    for a, b in zip(converted, exact):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
