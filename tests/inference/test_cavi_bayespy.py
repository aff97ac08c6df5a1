"""``auto_cavi`` against BayesPy (Luttinen 2016, JMLR 17(41)), an independent implementation
of variational message passing, on the same data, priors and (for the mixtures) starts: 13
models, each run by both engines to convergence (relative change per sweep below 1e-14 for
BayesPy, 1e-13 for auto_cavi, whose bound jitters at 1e-15 by rounding), whose final bounds
must agree within 1e-10 relative -- the two engines compute the same optimum of the same ELBO
with every constant kept, so only rounding separates them (measured: 2e-16 to 2e-14).

BayesPy writes an Exponential(l) as Gamma(1, l), a Normal's precision where Pyro writes its
scale (scale = precision^-1/2), the design matrix product as ``SumMultiply``, and a Wishart by
its inverse scale.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.ops.indexing import Vindex

from inference import auto_cavi

bn = pytest.importorskip("bayespy.nodes")
VB = pytest.importorskip("bayespy.inference").VB

F64 = torch.float64
RNG = np.random.default_rng(0)
N, D, K = 80, 4, 3
COUNTS = RNG.poisson(3.0, 30)
FLIPS = (RNG.random(40) < 0.3).astype(int)
LABELS = RNG.integers(0, 3, 50)
XN = 1.0 + 0.7 * RNG.standard_normal(25)
X = RNG.standard_normal((N, D))
Y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 * RNG.standard_normal(N)
ROWS = RNG.multinomial(8, [0.2, 0.3, 0.5], size=10)
WAITS = RNG.exponential(0.5, 30)
SIZES = RNG.gamma(3.0, 0.5, 30)
XG = np.concatenate([RNG.standard_normal(30) - 5, RNG.standard_normal(30),
                     RNG.standard_normal(30) + 5])  # fmt: skip
CP = np.concatenate([RNG.poisson(1.0, 40), RNG.poisson(8.0, 40)]).astype(float)


def t(a):
    return torch.tensor(a, dtype=F64)


def _bayespy_bound(observed, nodes):
    Q = VB(*observed, *nodes)
    Q.update(repeat=5000, tol=1e-14, verbose=False)
    return Q.compute_lowerbound()


def _ours(model, *args, init=None):
    fit = auto_cavi(model, *args, num_steps=5000, tol=1e-13, init=init, check_draws=0)
    return float(fit.elbo)


# ---- the twelve models, each as (BayesPy nodes, Pyro model and its arguments) -------------


def gamma_poisson():
    lam = bn.Gamma(2.0, 0.5)
    y = bn.Poisson(lam, plates=(30,))
    y.observe(COUNTS)

    def model(c):
        rate = pyro.sample("lam", dist.Gamma(t(2.0), 0.5))
        with pyro.plate("n", len(c)):
            pyro.sample("y", dist.Poisson(rate), obs=c)

    return [y], [lam], model, (t(COUNTS),)


def beta_bernoulli():
    p = bn.Beta([1.3, 2.7])
    y = bn.Bernoulli(p, plates=(40,))
    y.observe(FLIPS)

    def model(f):
        theta = pyro.sample("p", dist.Beta(t(1.3), 2.7))
        with pyro.plate("n", len(f)):
            pyro.sample("y", dist.Bernoulli(theta), obs=f)

    return [y], [p], model, (t(FLIPS),)


def dirichlet_categorical():
    pi = bn.Dirichlet([1.5, 0.7, 2.2])
    y = bn.Categorical(pi, plates=(50,))
    y.observe(LABELS)

    def model(z):
        theta = pyro.sample("pi", dist.Dirichlet(t([1.5, 0.7, 2.2])))
        with pyro.plate("n", len(z)):
            pyro.sample("y", dist.Categorical(theta), obs=z)

    return [y], [pi], model, (torch.tensor(LABELS),)


def normal_gamma():
    mu, tau = bn.GaussianARD(0.3, 1 / 4.0), bn.Gamma(2.0, 1.5)
    y = bn.GaussianARD(mu, tau, plates=(25,))
    y.observe(XN)

    def model(x):
        m = pyro.sample("mu", dist.Normal(t(0.3), 2.0))
        precision = pyro.sample("tau", dist.Gamma(t(2.0), 1.5))
        with pyro.plate("n", len(x)):
            pyro.sample("y", dist.Normal(m, precision**-0.5), obs=x)

    return [y], [mu, tau], model, (t(XN),)


def linear_regression():
    w, tau = bn.GaussianARD(0, 1 / 4.0, shape=(D,)), bn.Gamma(1.0, 1.0)
    y = bn.GaussianARD(bn.SumMultiply("i,i", X, w), tau)
    y.observe(Y)

    def model(x, y):
        weights = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), 2.0).to_event(1))
        precision = pyro.sample("tau", dist.Gamma(t(1.0), 1.0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", dist.Normal(x @ weights, precision**-0.5), obs=y)

    return [y], [w, tau], model, (t(X), t(Y))


def ard_regression():
    alpha = bn.Gamma(1e-2, 1e-2, plates=(D,))
    w, tau = bn.GaussianARD(0, alpha, shape=(D,)), bn.Gamma(1.0, 1.0)
    y = bn.GaussianARD(bn.SumMultiply("i,i", X, w), tau)
    y.observe(Y)

    def model(x, y):
        a = pyro.sample("alpha", dist.Gamma(torch.full((D,), 1e-2, dtype=F64), 1e-2).to_event(1))
        weights = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), a**-0.5).to_event(1))
        precision = pyro.sample("tau", dist.Gamma(t(1.0), 1.0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", dist.Normal(x @ weights, precision**-0.5), obs=y)

    return [y], [w, alpha, tau], model, (t(X), t(Y))


def dirichlet_multinomial():
    p = bn.Dirichlet([1.0, 2.0, 0.5])
    y = bn.Multinomial(8, p, plates=(10,))
    y.observe(ROWS)

    def model(rows):
        theta = pyro.sample("p", dist.Dirichlet(t([1.0, 2.0, 0.5])))
        with pyro.plate("n", len(rows)):
            pyro.sample("m", dist.Multinomial(probs=theta, total_count=8), obs=rows)

    return [y], [p], model, (t(ROWS),)


def exponential_gamma():
    lam = bn.Gamma(2.0, 1.0)
    y = bn.Gamma(1.0, lam, plates=(30,))  # BayesPy's Exponential(l)
    y.observe(WAITS)

    def model(e):
        rate = pyro.sample("lam", dist.Gamma(t(2.0), 1.0))
        with pyro.plate("n", len(e)):
            pyro.sample("y", dist.Exponential(rate), obs=e)

    return [y], [lam], model, (t(WAITS),)


def gamma_on_a_gamma_rate():
    b = bn.Gamma(2.0, 1.0)
    y = bn.Gamma(3.0, b, plates=(30,))
    y.observe(SIZES)

    def model(g):
        rate = pyro.sample("b", dist.Gamma(t(2.0), 1.0))
        with pyro.plate("n", len(g)):
            pyro.sample("y", dist.Gamma(3.0, rate), obs=g)

    return [y], [b], model, (t(SIZES),)


MEANS = np.array([-4.0, 0.5, 4.0])


def _gmm_nodes(gamma_precision: bool):
    pi = bn.Dirichlet(np.full(K, 1.5))
    z = bn.Categorical(pi, plates=(len(XG),))
    mu = bn.GaussianARD(0, 1 / 100.0, plates=(K,), shape=())
    tau = bn.Gamma(2.0, 2.0, plates=(K,)) if gamma_precision else 1.0
    y = bn.Mixture(z, bn.GaussianARD, mu, tau)
    y.observe(XG)
    mu.initialize_from_value(MEANS)
    return [y], [z, mu, pi] + ([tau] if gamma_precision else [])


def _gmm(gamma_precision: bool):
    def model(x):
        w = pyro.sample("pi", dist.Dirichlet(torch.full((K,), 1.5, dtype=F64)))
        with pyro.plate("k", K):
            mu = pyro.sample("mu", dist.Normal(t(0.0), 10.0))
            tau = pyro.sample("tau", dist.Gamma(t(2.0), 2.0)) if gamma_precision else t([1.0] * K)
        with pyro.plate("n", len(x)):
            z = pyro.sample("z", dist.Categorical(w))
            scale = Vindex(tau)[..., z] ** -0.5
            pyro.sample("y", dist.Normal(Vindex(mu)[..., z], scale), obs=x)

    return model


GMM_START = {"mu": {"loc": t(MEANS), "scale": torch.full((K,), 1e-3, dtype=F64)}}


def gaussian_mixture():
    observed, nodes = _gmm_nodes(False)
    return observed, nodes, _gmm(False), (t(XG),), GMM_START


def gaussian_mixture_with_precisions():
    observed, nodes = _gmm_nodes(True)
    return observed, nodes, _gmm(True), (t(XG),), GMM_START


def poisson_mixture():
    pi = bn.Dirichlet(np.ones(2))
    z = bn.Categorical(pi, plates=(len(CP),))
    lam = bn.Gamma(1.0, 0.2, plates=(2,))
    y = bn.Mixture(z, bn.Poisson, lam)
    y.observe(CP.astype(int))
    lam.initialize_from_value(np.array([0.5, 10.0]))

    def model(c):
        w = pyro.sample("pi", dist.Dirichlet(torch.ones(2, dtype=F64)))
        with pyro.plate("k", 2):
            rate = pyro.sample("lam", dist.Gamma(t(1.0), 0.2))
        with pyro.plate("n", len(c)):
            z = pyro.sample("z", dist.Categorical(w))
            pyro.sample("y", dist.Poisson(Vindex(rate)[..., z]), obs=c)

    start = {"lam": {"concentration": t([1e4, 1e4]), "rate": t([2e4, 1e3])}}
    return [y], [z, lam, pi], model, (t(CP),), start


C2 = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
X2 = np.concatenate([
    RNG.multivariate_normal(c, cov, 60)
    for c, cov in zip(C2, ([[0.5, 0.0], [0.0, 2.0]], [[1.0, 0.6], [0.6, 1.0]], [[1.0, -0.3],
                                                                                 [-0.3, 0.4]]))
])  # fmt: skip


def gaussian_mixture_with_full_covariances():
    """Dirichlet weights, MultivariateNormal means and Wishart precisions: BayesPy's
    Wishart(n, V) takes the inverse scale V = W^-1."""
    pi = bn.Dirichlet(np.full(K, 1.5))
    z = bn.Categorical(pi, plates=(len(X2),))
    mu = bn.Gaussian(np.zeros(2), np.eye(2) / 100.0, plates=(K,))
    Lam = bn.Wishart(4.0, 4.0 * np.eye(2), plates=(K,))
    y = bn.Mixture(z, bn.Gaussian, mu, Lam)
    y.observe(X2)
    mu.initialize_from_value(C2 + 0.3)

    def model(x):
        w = pyro.sample("pi", dist.Dirichlet(torch.full((K,), 1.5, dtype=F64)))
        with pyro.plate("k", K):
            m = pyro.sample(
                "mu",
                dist.MultivariateNormal(torch.zeros(2, dtype=F64), 100.0 * torch.eye(2, dtype=F64)),
            )
            L = pyro.sample(
                "L", dist.Wishart(t(4.0), covariance_matrix=torch.eye(2, dtype=F64) / 4.0)
            )
        with pyro.plate("n", len(x)):
            z = pyro.sample("z", dist.Categorical(w))
            pyro.sample(
                "x",
                dist.MultivariateNormal(
                    Vindex(m)[..., z, :], precision_matrix=Vindex(L)[..., z, :, :]
                ),
                obs=x,
            )

    eye = torch.eye(2, dtype=F64).expand(K, 2, 2)
    start = {
        "mu": {"loc": t(C2 + 0.3), "covariance_matrix": 1e-6 * eye},
        "L": {"df": torch.full((K,), 4.0, dtype=F64), "covariance_matrix": eye / 4.0},
    }
    return [y], [z, mu, Lam, pi], model, (t(X2),), start  # fmt: skip


MODELS = [gamma_poisson, beta_bernoulli, dirichlet_categorical, normal_gamma, linear_regression,
          ard_regression, dirichlet_multinomial, exponential_gamma, gamma_on_a_gamma_rate,
          gaussian_mixture, gaussian_mixture_with_precisions, poisson_mixture,
          gaussian_mixture_with_full_covariances]  # fmt: skip


@pytest.mark.parametrize("build", MODELS, ids=lambda f: f.__name__)
def test_the_bound_equals_bayespys(build):
    observed, nodes, model, args, *start = build()
    theirs = _bayespy_bound(observed, nodes)
    ours = _ours(model, *args, init=start[0] if start else None)
    assert abs(ours - theirs) < 1e-10 * abs(theirs), (ours, theirs)
