r"""The exponential-Gaussian model: ELBO, gradients, optima and exact evidence in closed form.

Model and variational family (source: Exercise Sheet 02 of "Machine Learning for Graphs and
Sequential Data", Problem 1)::

    z ~ Expo(theta),   x | z ~ N(z, 1),   q_phi(z) = Expo(phi),   theta, phi > 0.

Every function works elementwise and broadcasts ``x``, ``theta`` and ``phi`` (independent
copies of the one-observation model), in the dtype it is given. Derivations, re-done here
rather than copied; the source's ELBO agrees up to the constant -1/2 log(2 pi) - x^2/2 + 1,
which it drops and we keep (it matters for the gap to log p(x)):

ELBO (to maximise), with E_q[z] = 1/phi, E_q[z^2] = 2/phi^2 and entropy H[q] = 1 - log phi::

    L(theta, phi) = E_q[log N(x | z, 1)] + E_q[log Expo(z | theta)] + H[q]
                  = -1/2 log(2 pi) - x^2/2 + (x - theta)/phi - 1/phi^2
                    + log theta - log phi + 1

Gradients (Problem 1c, which agrees)::

    dL/dtheta = 1/theta - 1/phi
    dL/dphi   = 2/phi^3 - (x - theta)/phi^2 - 1/phi

Optimal phi for fixed theta: phi^3 dL/dphi = 0 is  phi^2 + (x - theta) phi - 2 = 0, whose
positive root is  phi* = (sqrt(d^2 + 8) - d)/2 = 4/(sqrt(d^2 + 8) + d)  with d = x - theta
(the second form has no cancellation when d >> 0). L -> -inf at phi -> 0 and phi -> inf, so
this unique stationary point is the maximum over phi.

Joint optimum: dL/dtheta = 0 gives theta = phi; then phi^2 + (x - phi) phi - 2 = 0 gives
x phi = 2, so theta* = phi* = 2/x, which is positive only for x > 0. There the Hessian is
[[-1/t^2, 1/t^2], [1/t^2, -1/t^2 - 2/t^4]] (t = 2/x), negative definite: a maximum. For
x <= 0 there is no stationary point; along theta = phi = t the ELBO is
const + x/t - 1/t^2, increasing to its supremum as t -> inf and never attaining it.

Exact evidence (completing the square in z)::

    p_theta(x) = int_0^inf theta e^{-theta z} N(x | z, 1) dz
               = theta exp(theta^2/2 - x theta) Phi(x - theta)

the exponentially modified Gaussian density at x. With m = x - theta, for m >= 0 we use
log Phi(m) (``log_ndtr``, no cancellation); for m < 0 the two terms above are huge and
opposite, so we use Phi(m) = erfcx(-m/sqrt 2) exp(-m^2/2)/2, which cancels them exactly::

    log p_theta(x) = log theta - x^2/2 + log(erfcx((theta - x)/sqrt 2) / 2).

The exact posterior p_theta(z | x) is N(m, 1) truncated to z > 0, with mean
m + phi_N(m)/Phi(m) (phi_N the standard normal density), and the identity
log p_theta(x) - L(theta, phi) = KL(q_phi || p_theta(. | x)) > 0 (Problem 1a: the posterior
has a z^2 term that Expo(phi) lacks, so the bound is never tight).

Maximum likelihood: d/dtheta log p_theta(x) = 1/theta - E[z | x], so theta_ML = 1/E[z | x]
(the variational theta* = 1/E_q[z] is the same equation with q in place of the posterior).
For x > 0 it has one finite root, found by bisection; for x <= 0, log p_theta(x) increases
towards log N(x | 0, 1) as theta -> inf and has no maximiser, as with the ELBO.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_observations",
    "elbo",
    "elbo_grad",
    "joint_optimum",
    "kl_to_posterior",
    "log_evidence",
    "ml_theta",
    "optimal_phi",
    "posterior_mean",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)
_SQRT_8 = math.sqrt(8.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_FAR, _CF_TERMS = 5.0, 50  # posterior_mean: continued fraction for m <= -5


def _as_tensor(value, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    else:
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        device = like.device if like is not None else None
        t = torch.as_tensor(value, dtype=dtype, device=device)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not bool(torch.isfinite(t).all()):
        bad = t[~torch.isfinite(t)].flatten()[0].item()
        raise ValueError(f"{name} must be finite, got {bad!r}")
    return t


def _positive(value, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    t = _as_tensor(value, name, like)
    if not bool((t > 0).all()):
        raise ValueError(f"{name} must be > 0, got {t[t <= 0].flatten()[0].item()!r}")
    return t


def _finite_result(value: torch.Tensor, what: str, **inputs) -> torch.Tensor:
    """``value``, or a ValueError naming the inputs at its first non-finite element: a result
    that overflows float (e.g. x^2 / 2 for |x| > 1e154 in float64) is refused, never returned
    as -inf or NaN."""
    bad = ~torch.isfinite(value)
    if not bool(bad.any()):
        return value
    index = tuple(int(i) for i in torch.unravel_index(bad.flatten().nonzero()[0, 0], value.shape))
    at = ", ".join(
        f"{name} = {torch.broadcast_to(torch.as_tensor(t), value.shape)[index].item()!r}"
        for name, t in inputs.items()
    )
    hint = "" if value.dtype == torch.float64 else " (float64 reaches further)"
    raise ValueError(f"{what} is {value[index].item()} at {at}: it overflows {value.dtype}{hint}")


def check_observations(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a floating tensor of shape (N,), N >= 1, all finite."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor, got {got}")
    if x.dim() != 1 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (N,) with N >= 1, got {tuple(x.shape)}")
    _as_tensor(x, "x")


def elbo(x, theta, phi) -> torch.Tensor:
    r"""The ELBO L(theta, phi) of one observation, all constants kept (to maximise).

    L = -1/2 log(2 pi) - x^2/2 + (x - theta)/phi - 1/phi^2 + log theta - log phi + 1
    (module docstring; Exercise Sheet 02, Problem 1b, up to its dropped constants).

    Args:
        x: observations, any shape; finite. theta: prior rate(s), > 0. phi: rate(s) of q, > 0.
            Tensors or numbers; broadcast together.

    Returns:
        Tensor of the broadcast shape, in nats (loss = -elbo).

    Raises:
        ValueError: x not finite, or theta or phi not > 0.
    """
    x = _as_tensor(x, "x")
    theta, phi = _positive(theta, "theta", x), _positive(phi, "phi", x)
    value = (
        -_HALF_LOG_2PI
        - 0.5 * x.square()
        + (x - theta) / phi
        - phi.reciprocal().square()
        + torch.log(theta)
        - torch.log(phi)
        + 1.0
    )
    return _finite_result(value, "the ELBO", x=x, theta=theta, phi=phi)


def elbo_grad(x, theta, phi) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(dL/dtheta, dL/dphi) = (1/theta - 1/phi, 2/phi^3 - (x - theta)/phi^2 - 1/phi).

    Seeds/002 Problem 1c (verified). Arguments as :func:`elbo`; both returns have the
    broadcast shape.
    """
    x = _as_tensor(x, "x")
    theta, phi = _positive(theta, "theta", x), _positive(phi, "phi", x)
    inv_phi = phi.reciprocal()
    d_theta = theta.reciprocal() - inv_phi
    d_phi = 2.0 * inv_phi**3 - (x - theta) * inv_phi.square() - inv_phi
    d_theta, d_phi = torch.broadcast_tensors(d_theta, d_phi)
    _finite_result(d_phi, "dL/dphi", x=x, theta=theta, phi=phi)
    return d_theta, d_phi


def optimal_phi(x, theta) -> torch.Tensor:
    r"""argmax_phi L(theta, phi), the positive root of the stationarity condition.

    The positive root of phi^2 + d phi - 2 = 0 with d = x - theta::

        phi* = (sqrt(d^2 + 8) - d) / 2     (used for d < 0)
             = 4 / (sqrt(d^2 + 8) + d)     (used for d >= 0; no cancellation)

    with sqrt(d^2 + 8) = hypot(d, sqrt 8) and both forms halved before adding, so that no
    intermediate overflows: phi* stays finite and > 0 for every finite d (about 2/d for
    d -> +inf, |d| for d -> -inf).

    Args:
        x: observations, finite. theta: prior rates, > 0. Broadcast together.

    Returns:
        phi*, the broadcast shape, > 0.

    Raises:
        ValueError: x - theta overflows, or phi* underflows to 0 (possible only where
            subnormals are flushed to zero: float32 with d beyond ~1.7e38).
    """
    x = _as_tensor(x, "x")
    theta = _positive(theta, "theta", x)
    d = _finite_result(x - theta, "x - theta", x=x, theta=theta)
    half_root = 0.5 * torch.hypot(d, d.new_tensor(_SQRT_8))
    phi = torch.where(d < 0, half_root - 0.5 * d, 2.0 / (half_root + 0.5 * d.clamp_min(0)))
    if not bool((phi > 0).all()):
        raise ValueError(f"optimal phi underflows to 0 at x - theta = {d[phi <= 0][0].item()!r}")
    return phi


def _require_positive_x(x: torch.Tensor, what: str) -> None:
    if not bool((x > 0).all()):
        bad = x[x <= 0].flatten()[0].item()
        raise ValueError(
            f"{what} exists only for x > 0, got x = {bad!r}: for x <= 0 the objective keeps "
            "increasing as theta (and phi) -> infinity, i.e. as the prior on z collapses onto "
            "0, and no finite theta attains its supremum"
        )


def joint_optimum(x) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The joint maximiser (theta*, phi*) = (2/x, 2/x) of L, for x > 0.

    dL/dtheta = 0 forces theta = phi, and then dL/dphi = 0 reduces to x phi = 2 (module
    docstring, where the Hessian is shown negative definite).

    Args:
        x: observations, any shape; every element finite and > 0.

    Returns:
        (theta*, phi*), each the shape of x.

    Raises:
        ValueError: for x <= 0, where the ELBO has no maximiser (it increases towards its
            supremum as theta = phi -> infinity), or x not finite.
    """
    x = _as_tensor(x, "x")
    _require_positive_x(x, "the joint ELBO maximiser")
    optimum = _finite_result(2.0 / x, "the optimum 2/x", x=x)
    return optimum, optimum.clone()


def log_evidence(x, theta) -> torch.Tensor:
    r"""Exact log p_theta(x) = log theta + theta^2/2 - x theta + log Phi(x - theta).

    Computed as ``log theta + theta^2/2 - x theta + log_ndtr(m)`` for m = x - theta >= 0 and
    as ``log theta - x^2/2 + log(erfcx((theta - x)/sqrt 2)/2)`` for m < 0 (module docstring),
    so it stays accurate for |x - theta| in the hundreds.

    Args:
        x: observations, finite. theta: prior rates, > 0. Broadcast together.

    Returns:
        log p_theta(x) in nats, the broadcast shape.
    """
    x = _as_tensor(x, "x")
    theta = _positive(theta, "theta", x)
    m = x - theta
    right = theta * (0.5 * theta - x) + torch.special.log_ndtr(m.clamp_min(0))
    left = -0.5 * x.square() + torch.log(0.5 * torch.special.erfcx(-m.clamp_max(0) / _SQRT_2))
    value = torch.log(theta) + torch.where(m >= 0, right, left)
    return _finite_result(value, "log p(x)", x=x, theta=theta)


def posterior_mean(x, theta) -> torch.Tensor:
    r"""E[z | x] under the exact posterior N(m, 1) truncated to z > 0, m = x - theta.

    E[z | x] = m + phi_N(m)/Phi(m) (m plus the inverse Mills ratio). For m < 0 the two terms
    cancel, increasingly as m -> -inf (where E[z | x] ~ 1/|m|), so with t = -m::

        m >= 0:       m + exp(log phi_N(m) - log Phi(m))
        0 < t < 5:    sqrt(2/pi) / erfcx(t/sqrt 2) - t        (relative error ~ eps t^2)
        t >= 5:       1/(t + 2/(t + 3/(t + 4/(t + ...))))     (Laplace's continued fraction
                      for the Mills ratio, minus t; 50 terms, exact to rounding here)

    Args:
        x: observations, finite. theta: prior rates, > 0. Broadcast together.

    Returns:
        The broadcast shape, > 0.
    """
    x = _as_tensor(x, "x")
    theta = _positive(theta, "theta", x)
    m = x - theta
    t = (-m).clamp_min(0)
    log_pdf = -0.5 * m.square() - _HALF_LOG_2PI
    right = m + torch.exp(log_pdf - torch.special.log_ndtr(m.clamp_min(0)))
    middle = _SQRT_2_OVER_PI / torch.special.erfcx(t / _SQRT_2) - t
    t_far = t.clamp_min(_FAR)
    far = 1.0 / (t_far + _continued_fraction_tail(t_far))
    return torch.where(m >= 0, right, torch.where(t < _FAR, middle, far))


def _continued_fraction_tail(t: torch.Tensor) -> torch.Tensor:
    """c(t) = 2/(t + 3/(t + 4/(t + ...))), 50 terms, so that E[z | x] = 1/(t + c(t)) for
    t = theta - x >= 5 (Laplace's continued fraction; c(t) ~ 2/t)."""
    tail = torch.zeros_like(t)
    for k in range(_CF_TERMS, 1, -1):
        tail = k / (t + tail)
    return tail


def _ml_score_sign(x: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """A quantity with the sign of the score d/dtheta log p_theta(x) = 1/theta - E[z | x],
    without cancellation where it matters (bisection needs only the sign).

    For t = theta - x >= 5, E[z | x] = 1/(t + c) (:func:`_continued_fraction_tail`), so
    1/theta - E[z | x] = (t + c - theta) / (theta (t + c)) = (c - x) / (theta (t + c)), whose
    sign is that of c - x: the two nearly equal terms never meet. (Subtracting them directly
    loses every digit once x < ~1e-6, where theta_ML ~ 2/x: that route returned 1.3e8 for
    x = 1e-20, where theta_ML = 2e20.)
    """
    theta = torch.exp(log_theta)
    t = theta - x
    far = _continued_fraction_tail(t.clamp_min(_FAR)) - x
    return torch.where(t >= _FAR, far, theta.reciprocal() - posterior_mean(x, theta))


def kl_to_posterior(x, theta, phi) -> torch.Tensor:
    r"""KL(q_phi || p_theta(. | x)) = log p_theta(x) - L(theta, phi) > 0.

    Arguments as :func:`elbo`; returns the broadcast shape, in nats.
    """
    return log_evidence(x, theta) - elbo(x, theta, phi)


def ml_theta(x, *, rtol: float = 1e-13, max_iter: int = 200) -> torch.Tensor:
    r"""The maximum-likelihood prior rate argmax_theta log p_theta(x), for x > 0.

    Solves the score equation 1/theta = E[z | x] (:func:`posterior_mean`) by bisection on
    log theta, elementwise, in the bracket [lo, 2/x]: the score is < 0 at theta = 2/x (the
    variational optimum) for every x > 0, so the bracket is grown downwards from 2/x, by
    factors of 2, until the score is > 0 at lo; then halved until its width is below ``rtol``
    relative (or no float lies inside it).

    Why the score is negative at 2/x: at theta = 2/x = 1/s (s = x/2), p(z | x) is N(m, 1)
    truncated to z > 0 with m = x - theta = -t, t = 1/s - 2s, so E[z | x] = -t + R(t), R the
    inverse Mills ratio. Sampford's bound R(t) > (3t + sqrt(t^2 + 8)) / 4, strict for every
    real t (Ann. Math. Statist. 24 (1953) 130), is >= t + s because sqrt(t^2 + 8) >= t + 4s
    reduces (squaring where t + 4s > 0) to 1 >= t s + 2 s^2, which holds with equality. Hence
    E[z | x] > s = 1/theta. (tests/analytic/test_expgauss.py checks the bound and the sign.)
    Compare with :func:`joint_optimum`: variational EM's theta* = 2/x differs from theta_ML
    because E_q[z] differs from E[z | x] (the bias of variational EM).

    Args:
        x: observations, any shape; finite and > 0.
        rtol: relative width of the final bracket (> 0). max_iter: bisection steps (>= 1);
            if the bracket is still wider than ``rtol`` after them, a ValueError says so.

    Returns:
        theta_ML, the shape of x.

    Raises:
        ValueError: for x <= 0, where log p_theta(x) increases towards log N(x | 0, 1) as
            theta -> infinity and has no maximiser.
    """
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be a finite number > 0, got {rtol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    x = _as_tensor(x, "x")
    _require_positive_x(x, "the maximum-likelihood theta")
    _finite_result(2.0 / x, "the starting point 2/x", x=x)

    def score(log_theta):
        return _ml_score_sign(x, log_theta)

    # Score < 0 at hi = 2/x (docstring); halve lo from 2/x until the score is > 0 there.
    lo = hi = torch.log(2.0 / x)
    for _ in range(max_iter):
        need_lo = score(lo) <= 0
        if not bool(need_lo.any()):
            break
        lo = torch.where(need_lo, lo - math.log(2.0), lo)
        if not bool((torch.exp(lo) > 0).all()):
            far = torch.exp(lo) <= 0
            raise ValueError(
                f"the maximum-likelihood theta for x = {x[far].flatten()[0].item()!r} "
                f"(about 2/x) lies beyond the range of {x.dtype}"
            )
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        positive = score(mid) > 0
        at_resolution = (mid == lo) | (mid == hi)  # no float between lo and hi
        lo, hi = torch.where(positive, mid, lo), torch.where(positive, hi, mid)
        if bool(((hi - lo) < rtol).logical_or(at_resolution).all()):
            return torch.exp(0.5 * (lo + hi))
    raise ValueError(
        f"ml_theta did not reach rtol={rtol!r} in max_iter={max_iter} bisection steps "
        f"(bracket width {float((hi - lo).max()):.3g} in log theta); raise max_iter"
    )
