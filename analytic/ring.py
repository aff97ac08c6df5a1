r"""The ring mixture: K unit-covariance Gaussians evenly spaced on a circle of radius R.

Model (the "Final Homework" on generative models and EBMs, P. Wang 2021, part 1; Bishop 2006,
"Pattern Recognition and Machine Learning", Sec. 9.2)::

    z ~ Categorical(pi),  pi_k = 1/K by default
    x | z = k ~ N(mu_k, I_2),  mu_k = (R cos 2 pi k/K, R sin 2 pi k/K),  k = 0..K-1

    log N(x; mu, I_2) = -log(2 pi) - |x - mu|^2 / 2        (the 2-D normaliser is 1/(2 pi);
                                                           the source writes 1/sqrt(2 pi))
    log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, I_2)]

The two variational choices of the source for q(z) given one x (Final Homework, part 2, Q3), with
L(q) = E_q[log p(x, z) - log q(z)] = log p(x) - KL(q || p(z | x)):

* q uniform, with uniform pi: log p(z) - log q(z) = 0, so
  ``L1(x) = (1/K) sum_k log N(x; mu_k, I)`` — an average over every k (the source writes one
  k). Since sum_k mu_k = 0 and |mu_k| = R on the ring (any K >= 2), the average of
  |x - mu_k|^2 is |x|^2 + R^2, so ``L1(x) = -log 2 pi - (|x|^2 + R^2) / 2`` exactly for every
  K >= 2 — not only in the limit K -> infinity.
* q = p(z | x): KL = 0 and ``L2(x) = log p(x)`` (the source writes log p(x | z)). K does change
  it: as K -> infinity the mixture tends to the ring density (averaging exp(R |x| cos t) over
  the angle t gives the modified Bessel function I0; Abramowitz & Stegun 9.6.16)::

      p_inf(x) = (1 / 2 pi) exp(-(|x|^2 + R^2) / 2) I0(R |x|)

  so the gap L2 - L1 = KL(uniform || p(z | x)) tends to log I0(R |x|), computed stably as
  log i0e(t) + t (``torch.special.i0e``, no overflow for large R |x|).

Also here: expectation-maximisation for the means and weights with the unit covariances known
(Dempster, Laird & Rubin 1977; Bishop 2006, Sec. 9.2.2), best of several k-means++ starts
(Arthur & Vassilvitskii 2007). Pure torch; never imports Pyro. Shapes: X (N, 2), means (K, 2),
weights (K,).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from analytic._validate import nonnegative, points

__all__ = [
    "EmResult",
    "elbo_uniform",
    "elbo_uniform_limit",
    "em",
    "log_density",
    "log_density_limit",
    "log_gaussians",
    "posterior_probs",
    "em_step",
    "kmeans_plus_plus",
    "ring_means",
    "sample",
]

LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# Validation: one ValueError naming the argument, before any work
# --------------------------------------------------------------------------------------------


def _count(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _radius(value) -> float:
    return nonnegative("radius", value)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed


def _weights(weights, num_components: int, like: torch.Tensor) -> torch.Tensor:
    """Mixing weights: uniform if None, else (K,), >= 0, summing to 1 (to 1e-6)."""
    if weights is None:
        return torch.full((num_components,), 1.0 / num_components, dtype=like.dtype)
    w = torch.as_tensor(weights, dtype=like.dtype)
    if w.shape != (num_components,):
        raise ValueError(f"weights must have shape ({num_components},), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all() & (w >= 0).all()) or abs(w.sum().item() - 1) > 1e-6:
        raise ValueError(f"weights must be >= 0 and sum to 1, got {w.tolist()}")
    return w


def _check(X, means, weights=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    X = points("X", X, 2)
    means = points("means", means, 2).to(X.dtype)
    return X, means, _weights(weights, means.shape[0], X)


# --------------------------------------------------------------------------------------------
# The mixture
# --------------------------------------------------------------------------------------------


def ring_means(num_components: int, radius: float, dtype=torch.float64) -> torch.Tensor:
    """mu_k = (R cos 2 pi k/K, R sin 2 pi k/K), k = 0..K-1: (K, 2)."""
    K, R = _count("num_components", num_components), _radius(radius)
    angle = 2 * math.pi * torch.arange(K, dtype=dtype) / K
    return R * torch.stack([angle.cos(), angle.sin()], dim=-1)


def log_gaussians(X: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """log N(x_n; mu_k, I_2) = -log 2 pi - |x_n - mu_k|^2 / 2: (N, K)."""
    X, means, _ = _check(X, means)
    return -LOG_2PI - 0.5 * torch.cdist(X, means).square()


def log_density(X: torch.Tensor, means: torch.Tensor, weights=None) -> torch.Tensor:
    """log p(x_n) = logsumexp_k [log pi_k + log N(x_n; mu_k, I)]: (N,). Uniform pi if None."""
    X, means, w = _check(X, means, weights)
    return torch.logsumexp(w.log() + log_gaussians(X, means), dim=-1)


def posterior_probs(X: torch.Tensor, means: torch.Tensor, weights=None) -> torch.Tensor:
    """p(z = k | x_n) = pi_k N(x_n; mu_k, I) / p(x_n), the responsibilities: (N, K)."""
    X, means, w = _check(X, means, weights)
    return torch.softmax(w.log() + log_gaussians(X, means), dim=-1)


def elbo_uniform(X: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """L1(x_n) = (1/K) sum_k log N(x_n; mu_k, I), the ELBO of q(z) uniform under uniform pi
    (log p(z) - log q(z) = 0): (N,). Always <= log p(x_n) (Jensen), equal iff K = 1."""
    return log_gaussians(X, means).mean(-1)


def _squared_norm(X: torch.Tensor) -> torch.Tensor:
    return X.square().sum(-1)


def elbo_uniform_limit(X: torch.Tensor, radius: float) -> torch.Tensor:
    """-log 2 pi - (|x|^2 + R^2) / 2: (N,). L1 on the ring for every K >= 2 (module docstring),
    hence also its K -> infinity limit."""
    return _l1_limit(points("X", X, 2), _radius(radius))


def _l1_limit(X: torch.Tensor, R: float) -> torch.Tensor:
    return -LOG_2PI - 0.5 * (_squared_norm(X) + R**2)


def log_density_limit(X: torch.Tensor, radius: float) -> torch.Tensor:
    """log p_inf(x) = -log 2 pi - (|x|^2 + R^2) / 2 + log I0(R |x|), the K -> infinity limit of
    the ring mixture's log density: (N,). log I0(t) = log i0e(t) + t, finite for any t."""
    X, R = points("X", X, 2), _radius(radius)
    t = R * _squared_norm(X).sqrt()
    return _l1_limit(X, R) + torch.special.i0e(t).log() + t


def sample(
    num_samples: int, means: torch.Tensor, weights=None, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (X (N, 2), z (N,)) from the mixture: z ~ Cat(pi), x = mu_z + eps, eps ~ N(0, I),
    from a ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched)."""
    N = _count("num_samples", num_samples)
    means = points("means", means, 2)
    w = _weights(weights, means.shape[0], means)
    _seed(seed)
    gen = torch.Generator().manual_seed(seed)
    z = torch.multinomial(w, N, replacement=True, generator=gen)
    return means[z] + torch.randn(N, 2, generator=gen, dtype=means.dtype), z


# --------------------------------------------------------------------------------------------
# EM with the unit covariances known
# --------------------------------------------------------------------------------------------


class EmResult(NamedTuple):
    """Result of :func:`em` (the best start).

    Attributes:
        means: (K, 2). weights: (K,).
        log_likelihood: 0-dim, sum_n log p(x_n) at ``means``, ``weights``.
        history: (num_iter + 1,), the log-likelihood at the start and after each iteration;
            never decreases (EM's monotonicity, Dempster et al. 1977, Thm 1).
        converged: whether an iteration gained <= tol * |log-likelihood| before max_iter.
    """

    means: torch.Tensor
    weights: torch.Tensor
    log_likelihood: torch.Tensor
    history: torch.Tensor
    converged: bool


def kmeans_plus_plus(X: torch.Tensor, num_components: int, gen: torch.Generator) -> torch.Tensor:
    """K starting means by k-means++ seeding: the first a uniformly drawn point, each next one
    drawn with probability proportional to its squared distance to the nearest chosen: (K, 2)."""
    N = X.shape[0]
    chosen = [int(torch.randint(N, (1,), generator=gen))]
    d2 = torch.cdist(X, X[chosen]).square().squeeze(-1)
    for _ in range(1, num_components):
        # unnormalised weights (torch.multinomial normalises); all points equal: uniform
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)
        chosen.append(int(torch.multinomial(weights, 1, generator=gen)))
        d2 = torch.minimum(d2, torch.cdist(X, X[chosen[-1:]]).square().squeeze(-1))
    return X[chosen].clone()


def em_step(X: torch.Tensor, means: torch.Tensor, weights: torch.Tensor):
    """One EM iteration: E-step r_nk = p(z_n = k | x_n) at the current parameters; M-step
    N_k = sum_n r_nk, mu_k = sum_n r_nk x_n / N_k, pi_k = N_k / N (Bishop 2006, eqs. 9.23-9.26
    with Sigma_k = I fixed). Returns (means, weights, log-likelihood before the step)."""
    log_joint = weights.log() + log_gaussians(X, means)
    log_px = torch.logsumexp(log_joint, dim=-1)
    r = (log_joint - log_px.unsqueeze(-1)).exp()
    counts = r.sum(0)
    new_means = (r.T @ X) / counts.clamp_min(torch.finfo(X.dtype).tiny).unsqueeze(-1)
    # a component no point chose keeps its mean (its weight is 0 either way)
    new_means = torch.where((counts > 0).unsqueeze(-1), new_means, means)
    return new_means, counts / X.shape[0], log_px.sum()


def _em_from(X, means, weights, max_iter: int, tol: float) -> EmResult:
    history = []
    converged = False
    for _ in range(max_iter):
        means, weights, value = em_step(X, means, weights)
        history.append(value)
        if len(history) > 1 and history[-1] - history[-2] <= tol * history[-1].abs():
            converged = True
            break
    final = log_density(X, means, weights).sum()
    history.append(final)
    return EmResult(means, weights, final, torch.stack(history), converged)


def em(
    X: torch.Tensor,
    num_components: int,
    *,
    num_init: int = 10,
    max_iter: int = 500,
    tol: float = 1e-10,
    seed: int = 0,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> EmResult:
    """Maximum-likelihood means and weights of a K-component unit-covariance mixture by EM.

    Each of ``num_init`` starts takes k-means++ means and uniform weights and iterates
    :func:`em_step` until one iteration gains <= ``tol`` * |log-likelihood| or ``max_iter``
    iterations; the start with the highest final log-likelihood is returned. Labels are
    arbitrary (match them to the truth, e.g. by the Hungarian algorithm).

    Args:
        X: (N, 2) data, N >= K. num_components: K >= 1. num_init, max_iter: >= 1.
        tol: >= 0, relative. seed: the k-means++ draws (a torch.Generator), in [0, 2**63).
        init: (means (K, 2), weights (K,)) to start from instead (then one start, no draws).

    Raises:
        ValueError: naming the argument, before any work.
    """
    X = points("X", X, 2)
    K = _count("num_components", num_components)
    _count("num_init", num_init)
    _count("max_iter", max_iter)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 <= tol < math.inf):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    _seed(seed)
    if X.shape[0] < K:
        raise ValueError(f"X has {X.shape[0]} points, fewer than num_components={K}")
    if init is not None:
        means, weights = init
        means = points("init means", means, 2).to(X.dtype)
        if means.shape[0] != K:
            raise ValueError(f"init means must have shape ({K}, 2), got {tuple(means.shape)}")
        return _em_from(X, means, _weights(weights, K, X), max_iter, tol)
    gen = torch.Generator().manual_seed(seed)
    uniform = torch.full((K,), 1.0 / K, dtype=X.dtype)
    best = None
    for _ in range(num_init):
        result = _em_from(X, kmeans_plus_plus(X, K, gen), uniform, max_iter, tol)
        if best is None or result.log_likelihood > best.log_likelihood:
            best = result
    return best
