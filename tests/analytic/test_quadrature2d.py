"""Simpson's rule in 2-D, in logs: exact for cubics, against scipy's adaptive quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

from analytic import quadrature2d as q2


def test_simpson_weights_integrate_cubics_exactly():
    """Simpson's rule is exact for polynomials of degree <= 3 (Davis & Rabinowitz 2.2)."""
    nodes, log_w = q2.simpson_log_weights(-0.5, 2.0, 9)
    w = log_w.exp()
    for poly, exact in [
        (lambda x: torch.ones_like(x), 2.5),
        (lambda x: 3 * x**3 - x + 2, 3 * (2**4 - 0.5**4) / 4 - (4 - 0.25) / 2 + 5),
    ]:
        assert (w * poly(nodes)).sum().item() == pytest.approx(exact, rel=1e-13)
    assert (w * nodes**4).sum().item() != pytest.approx((2**5 + 0.5**5) / 5, rel=1e-6)


def test_log_integral_of_a_positive_cubic_product_is_exact():
    f = lambda p: torch.log((p[:, 0] ** 3 + 2) * (p[:, 1] ** 2 + 1))  # noqa: E731
    exact = ((2**4 - 1) / 4 + 2) * (3**3 / 3 + 3)  # over [1, 2] x [0, 3]: 5.75 x 12
    assert q2.log_integral_2d(f, (1.0, 2.0, 0.0, 3.0), 5) == pytest.approx(
        math.log(exact), rel=1e-13
    )


def test_against_scipy_on_a_curved_density_far_below_float_range():
    """exp(-x^2/2 - (y - x^2)^2 / (2 * 0.3^2) - 800): a banana whose values (~e^-800) underflow
    float64, so scipy integrates exp(. + 800) and the logs are compared with scipy's and with the
    closed form log(2 pi 0.3) - 800, to 1e-9 (Simpson with h = 0.01 and 0.044 against the
    banana's widths 1 and 0.3: O(h^4) error, measured below 1e-10)."""

    def log_f(p):
        x, y = p[:, 0], p[:, 1]
        return -0.5 * x**2 - 0.5 * ((y - x**2) / 0.3) ** 2 - 800.0

    box = (-8.0, 8.0, -3.0, 68.0)  # misses < e^-32 of the mass
    ours = q2.log_integral_2d(log_f, box, 1601, chunk=100_000)
    ref, err = scipy.integrate.dblquad(
        lambda y, x: math.exp(-0.5 * x**2 - 0.5 * ((y - x**2) / 0.3) ** 2),
        -8, 8, lambda x: -3, lambda x: 68, epsabs=0, epsrel=1e-12,
    )  # fmt: skip
    assert ref == pytest.approx(2 * math.pi * 0.3, rel=1e-9)  # the closed form, too
    assert ours == pytest.approx(math.log(ref) - 800, abs=1e-9)
    assert ours == pytest.approx(math.log(2 * math.pi * 0.3) - 800, abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"num_points": 4}, "^num_points must be odd for Simpson's rule, got 4$"),
     ({"num_points": 1}, "^num_points must be an odd integer >= 3, got 1$"),
     ({"num_points": 5.0}, "^num_points must be an odd integer >= 3, got 5.0$"),
     ({"box": (1.0, 1.0, 0.0, 1.0)}, "^need finite lower < upper, got lower=1.0, upper=1.0$"),
     ({"box": (0.0, math.inf, 0.0, 1.0)}, "^need finite lower < upper, got lower=0.0, upper=inf$")],
)  # fmt: skip
def test_bad_input(kwargs, pattern):
    args = {"box": (0.0, 1.0, 0.0, 1.0), "num_points": 5, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        q2.log_integral_2d(lambda p: torch.zeros(len(p)), args["box"], args["num_points"])


def test_chunks_do_not_change_the_result():
    log_f = lambda p: -(p**2).sum(-1)  # noqa: E731
    a = q2.log_integral_2d(log_f, (-4, 4, -4, 4), 101, chunk=7)
    b = q2.log_integral_2d(log_f, (-4, 4, -4, 4), 101)
    assert a == pytest.approx(b, rel=1e-14) and a == pytest.approx(math.log(math.pi), abs=1e-6)
    assert np.isfinite(a)


def test_three_points_and_the_default_grid_under_a_float32_default(float32_default):
    """n = 3 (one Simpson panel, the fewest allowed) is exact for a cubic; the default grid
    (801 points) integrates a unit Gaussian over +-8 to float32 rounding (1e-7); nodes and
    weights are float64 under torch's own default dtype, and a float32 log-integrand is
    accumulated in float64."""
    nodes, log_w = q2.simpson_log_weights(0.0, 2.0, 3)
    assert nodes.dtype == log_w.dtype == torch.float64
    assert (log_w.exp() * (nodes**3 + 1)).sum().item() == pytest.approx(6.0, rel=1e-15)
    log_gauss = lambda p: (-0.5 * p.square().sum(-1) - math.log(2 * math.pi)).float()  # noqa: E731
    assert q2.log_integral_2d(log_gauss, (-8.0, 8.0, -8.0, 8.0)) == pytest.approx(0.0, abs=1e-7)
