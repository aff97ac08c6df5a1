"""The conjugate structures of ``auto_cavi`` beyond one latent per parameter: linear-Gaussian
parents (VMP's Dot/SumMultiply: ``X @ w``, ``w0 + X @ w``, sums of indexed latents, known
factors), known factors on rates and precisions, Gamma priors on Gamma and Exponential rates,
Exponential priors, InverseGamma variances and Dirichlet-Multinomial counts; and the models
that are conjugate but not supported, each refused by what it is.

Independent routes: a one-block model's q is its exact posterior, so its bound is the log
evidence, which is computed here in closed form from ``torch.distributions`` (the marginal
MultivariateNormal of a linear regression, the Gamma-Poisson and Dirichlet-Multinomial
evidences), and ``log p(x, z) - log q(z)`` from Pyro's own log densities is that same number
at every draw (Pyro's ``Trace_ELBO`` with zero spread). Mean-field models are scored by Pyro's
Monte Carlo ``Trace_ELBO`` on the returned guide, within 4 standard errors.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.ops.indexing import Vindex

from inference import auto_cavi

F64 = torch.float64
G = torch.Generator().manual_seed(7)
N, D = 60, 3
X = torch.randn(N, D, generator=G, dtype=F64)
W_TRUE = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
Y = 0.4 + X @ W_TRUE + 0.3 * torch.randn(N, generator=G, dtype=F64)
REGION = torch.randint(3, (40,), generator=G)
EXPOSURE = 0.5 + 3.0 * torch.rand(40, generator=G, dtype=F64)
COUNTS = torch.poisson(EXPOSURE * torch.tensor([1.0, 2.0, 4.0], dtype=F64)[REGION], generator=G)
POSITIVE = torch.distributions.Gamma(torch.tensor(3.0, dtype=F64), 2.0).sample((25,))
XN = 1.0 + torch.randn(30, generator=G, dtype=F64)
ROWS = torch.tensor([[3.0, 0, 5], [1, 2, 2], [0, 0, 7]], dtype=F64)
YV = torch.randn(N, D, generator=G, dtype=F64)


def _zero_spread(model, fit, *args):
    """Pyro's Trace_ELBO of the returned q, one draw at a time: at the exact posterior every
    draw gives log p(x) (to rounding)."""
    return [
        -Trace_ELBO(num_particles=1, max_plate_nesting=1).loss(model, fit.guide, *args)
        for _ in range(3)
    ]


# ---------------------------------------------------------------------------------------------
# One-block models: the exact posterior, the exact evidence
# ---------------------------------------------------------------------------------------------


def regression(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=x.dtype), 2.0).to_event(1))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(x @ w, 0.3), obs=y)


def regression_mvn_prior(x, y):
    prior_cov = torch.tensor([[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 3.0]], dtype=F64)
    w = pyro.sample("w", dist.MultivariateNormal(torch.ones(D, dtype=F64), prior_cov))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(0.4 + x @ w, 0.3), obs=y)


@pytest.mark.parametrize("model, loc0, cov0, offset", [
    (regression, torch.zeros(D, dtype=F64), 4.0 * torch.eye(D, dtype=F64), 0.0),
    (regression_mvn_prior, torch.ones(D, dtype=F64),
     torch.tensor([[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 3.0]], dtype=F64), 0.4),
], ids=["Normal prior", "MultivariateNormal prior, offset"])  # fmt: skip
def test_linear_regression_reaches_the_exact_posterior_and_evidence(model, loc0, cov0, offset):
    """q(w) is the posterior N(m, S), S = (S0^-1 + X^T X / s^2)^-1, m = S (S0^-1 m0 +
    X^T (y - b) / s^2), with its full covariance; the bound is log N(y | b + X m0,
    X S0 X^T + s^2 I), the marginal likelihood."""
    fit = auto_cavi(model, X, Y)
    assert fit.num_steps == 2 and fit.converged
    S = torch.linalg.inv(torch.linalg.inv(cov0) + X.T @ X / 0.09)
    m = S @ (torch.linalg.solve(cov0, loc0) + X.T @ (Y - offset) / 0.09)
    torch.testing.assert_close(fit.params["w"]["loc"], m, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fit.params["w"]["covariance_matrix"], S, rtol=1e-10, atol=1e-14)
    marginal = dist.MultivariateNormal(offset + X @ loc0, X @ cov0 @ X.T + 0.09 * torch.eye(N))
    evidence = float(marginal.log_prob(Y))
    assert abs(float(fit.elbo) - evidence) < 1e-10 * abs(evidence)
    assert all(abs(v - evidence) < 1e-9 * abs(evidence) for v in _zero_spread(model, fit, X, Y))


def test_linear_regression_in_float32_is_accepted():
    """The unit probes of X @ w and their check on every band are held to float32's rounding."""
    fit = auto_cavi(regression, X.float(), Y.float(), num_steps=3)
    assert fit.params["w"]["loc"].dtype == torch.float32
    torch.testing.assert_close(fit.params["w"]["loc"].double(),
                               auto_cavi(regression, X, Y).params["w"]["loc"],
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def exposure(counts):
    with pyro.plate("region", 3):
        rate = pyro.sample("rate", dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0))
    with pyro.plate("n", len(counts)):
        pyro.sample("c", dist.Poisson(rate[REGION] * EXPOSURE), obs=counts)


def test_a_known_exposure_on_a_gamma_rate_is_exact():
    """Poisson(e_n lam_r): q(lam_r) = Gamma(a + S_r, b + E_r) (S_r, E_r: the region's counts
    and exposures), and log p(s) = sum_r [a log b - lgamma(a) + lgamma(a + S_r) - (a + S_r)
    log(b + E_r)] + sum_n [s_n log e_n - lgamma(s_n + 1)]."""
    fit = auto_cavi(exposure, COUNTS)
    S = torch.zeros(3, dtype=F64).index_add_(0, REGION, COUNTS)
    E = torch.zeros(3, dtype=F64).index_add_(0, REGION, EXPOSURE)
    torch.testing.assert_close(fit.params["rate"]["concentration"], 2.0 + S)
    torch.testing.assert_close(fit.params["rate"]["rate"], 1.0 + E)
    a, b = 2.0, 1.0
    evidence = float(
        (a * math.log(b) - math.lgamma(a) + torch.lgamma(a + S) - (a + S) * torch.log(b + E)).sum()
        + (COUNTS * EXPOSURE.log() - torch.lgamma(COUNTS + 1)).sum()
    )
    assert abs(float(fit.elbo) - evidence) < 1e-10 * abs(evidence)


def dirichlet_multinomial(rows):
    p = pyro.sample("p", dist.Dirichlet(torch.tensor([1.0, 2.0, 0.5], dtype=F64)))
    with pyro.plate("n", len(rows)):
        pyro.sample("m", dist.Multinomial(probs=p, total_count=8), obs=rows)


def test_dirichlet_multinomial_is_exact():
    """log p = sum_n log multinomial coefficient + lgamma(A) - lgamma(A + T) + sum_d
    [lgamma(a_d + X_d) - lgamma(a_d)] (A = sum a, X_d the column totals, T their sum)."""
    fit = auto_cavi(dirichlet_multinomial, ROWS)
    alpha = torch.tensor([1.0, 2.0, 0.5], dtype=F64)
    totals = ROWS.sum(0)
    torch.testing.assert_close(fit.params["p"]["concentration"], alpha + totals)
    coef = (torch.lgamma(ROWS.sum(-1) + 1) - torch.lgamma(ROWS + 1).sum(-1)).sum()
    evidence = float(
        coef + torch.lgamma(alpha.sum()) - torch.lgamma(alpha.sum() + totals.sum())
        + (torch.lgamma(alpha + totals) - torch.lgamma(alpha)).sum()
    )  # fmt: skip
    assert abs(float(fit.elbo) - evidence) < 1e-10 * abs(evidence)


def gamma_on_gamma_rate(y):
    b = pyro.sample("b", dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Gamma(3.0, b), obs=y)


def exponential_likelihood(y):
    lam = pyro.sample("lam", dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Exponential(lam), obs=y)


def exponential_prior(counts):
    lam = pyro.sample("lam", dist.Exponential(torch.tensor(0.5, dtype=F64)))
    with pyro.plate("n", len(counts)):
        pyro.sample("c", dist.Poisson(lam), obs=counts)


def inverse_gamma_variance(x):
    v = pyro.sample("v", dist.InverseGamma(torch.tensor(3.0, dtype=F64), 2.0))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.Normal(1.0, v**0.5), obs=x)


def gamma_precision_scaled(x):
    tau = pyro.sample("tau", dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.Normal(1.0, (0.25 * tau) ** -0.5), obs=x)


@pytest.mark.parametrize("model, data, posterior", [
    (gamma_on_gamma_rate, POSITIVE,
     lambda y: (2.0 + 3.0 * len(y), 1.0 + y.sum())),
    (exponential_likelihood, POSITIVE, lambda y: (2.0 + len(y), 1.0 + y.sum())),
    (exponential_prior, COUNTS, lambda c: (1.0 + c.sum(), 0.5 + len(c))),
    (inverse_gamma_variance, XN,
     lambda x: (3.0 + len(x) / 2, 2.0 + ((x - 1.0) ** 2).sum() / 2)),
    (gamma_precision_scaled, XN,
     lambda x: (2.0 + len(x) / 2, 1.0 + 0.25 * ((x - 1.0) ** 2).sum() / 2)),
], ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
def test_one_block_pairs_reach_the_exact_posterior(model, data, posterior):
    """The textbook posterior's (concentration, rate), and Pyro's log p - log q the bound at
    every draw. Gamma(a, b) on a Gamma(3, b)'s rate: Gamma(a + 3 N, b + sum y); on an
    Exponential's: Gamma(a + N, b + sum y); an Exponential(r) prior on a Poisson rate is
    Gamma(1, r): Gamma(1 + sum c, r + N); InverseGamma(a, b) on a Normal's variance:
    InverseGamma(a + N/2, b + sum (x - m)^2 / 2); Gamma on tau with scale (k tau)^-1/2:
    Gamma(a + N/2, b + k sum (x - m)^2 / 2)."""
    fit = auto_cavi(model, data)
    (site,) = fit.params
    want = torch.tensor([float(v) for v in posterior(data)], dtype=F64)
    got = torch.stack([fit.params[site]["concentration"], fit.params[site]["rate"]])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0.0)
    elbo = float(fit.elbo)
    assert all(abs(v - elbo) < 1e-9 * abs(elbo) for v in _zero_spread(model, fit, data))


W0 = torch.tensor([[1.0, 0.2, 0.0], [0.2, 1.0, 0.1], [0.0, 0.1, 0.5]], dtype=F64)


def wishart_precision(y):
    P = pyro.sample("P", dist.Wishart(torch.tensor(5.0, dtype=F64), covariance_matrix=W0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(D, dtype=F64),
                                                 precision_matrix=P), obs=y)  # fmt: skip


@pytest.mark.filterwarnings("ignore:Singular sample detected")  # torch's Wishart sampler
def test_a_wishart_precision_is_exact():
    """Wishart(n, W) on the precision of N rows of known mean 0: the posterior is
    Wishart(n + N, (W^-1 + sum y y^T)^-1), and Pyro's log p - log q (its own Wishart and
    MultivariateNormal densities) is the bound at every draw."""
    fit = auto_cavi(wishart_precision, YV)
    assert float(fit.params["P"]["df"]) == 5.0 + N
    scale = torch.linalg.inv(torch.linalg.inv(W0) + YV.T @ YV)
    torch.testing.assert_close(fit.params["P"]["covariance_matrix"], scale, rtol=1e-10, atol=0)
    elbo = float(fit.elbo)
    assert all(abs(v - elbo) < 1e-9 * abs(elbo) for v in _zero_spread(wishart_precision, fit, YV))


# ---------------------------------------------------------------------------------------------
# Mean-field models: Pyro's Monte Carlo ELBO of the returned q
# ---------------------------------------------------------------------------------------------


def regression_unknown_noise(x, y):
    w0 = pyro.sample("w0", dist.Normal(torch.tensor(0.0, dtype=F64), 5.0))
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), 2.0).to_event(1))
    tau = pyro.sample("tau", dist.Gamma(torch.tensor(1.0, dtype=F64), 1.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(w0 + x @ w, tau**-0.5), obs=y)


def ard_regression(x, y):
    alpha = pyro.sample("alpha", dist.Gamma(torch.full((D,), 1e-2, dtype=F64), 1e-2).to_event(1))
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), alpha**-0.5).to_event(1))
    tau = pyro.sample("tau", dist.Gamma(torch.tensor(1.0, dtype=F64), 1.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(x @ w, tau**-0.5), obs=y)


GROUP = torch.randint(4, (80,), generator=G)
ITEM = torch.randint(5, (80,), generator=G)
YR = GROUP - ITEM + torch.randn(80, generator=G, dtype=F64)


def random_effects(group, item, y):
    with pyro.plate("groups", 4):
        a = pyro.sample("a", dist.Normal(torch.tensor(0.0, dtype=F64), 3.0))
    with pyro.plate("items", 5):
        b = pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=F64), 3.0))
    tau = pyro.sample("tau", dist.Gamma(torch.tensor(2.0, dtype=F64), 2.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(a[group] + b[item], tau**-0.5), obs=y)


def normal_gamma_prior(x):
    tau = pyro.sample("tau", dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0))
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.3, dtype=F64), (0.5 * tau) ** -0.5))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.Normal(mu, tau**-0.5), obs=x)


def slope_intercept(x, y):
    a = pyro.sample("a", dist.Normal(torch.tensor(0.0, dtype=F64), 5.0))
    b = pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=F64), 5.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(a + b * x, 0.5), obs=y)


def normal_wishart(y):
    m = pyro.sample("m", dist.MultivariateNormal(torch.zeros(D, dtype=F64),
                                                 10.0 * torch.eye(D, dtype=F64)))  # fmt: skip
    P = pyro.sample("P", dist.Wishart(torch.tensor(5.0, dtype=F64), covariance_matrix=W0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.MultivariateNormal(m, precision_matrix=P), obs=y)


@pytest.mark.parametrize("model, args", [
    (regression_unknown_noise, (X, Y)), (ard_regression, (X, Y)),
    (random_effects, (GROUP, ITEM, YR)), (normal_gamma_prior, (XN,)),
    (slope_intercept, (X[:, 0], Y)), (normal_wishart, (YV,)),
], ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
@pytest.mark.filterwarnings("ignore:Singular sample detected")
def test_mean_field_linear_gaussian_models_match_pyros_monte_carlo_elbo(model, args):
    fit = auto_cavi(model, *args, num_steps=2000)
    h = fit.elbo_history
    assert fit.converged and bool((h[1:] - h[:-1] >= -1e-9 * h[1:].abs()).all())
    pyro.set_rng_seed(0)  # one draw per particle: these models are not written for batches
    draws = torch.tensor([
        -Trace_ELBO(num_particles=1, max_plate_nesting=1).loss(model, fit.guide, *args)
        for _ in range(400)
    ])  # fmt: skip
    se = draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean() - fit.elbo) < 4 * se  # 4 standard errors of 400 draws


def test_a_latent_in_a_matrix_product_gets_a_full_covariance_guide():
    """The guide samples w from its MultivariateNormal q at the site's shape."""
    fit = auto_cavi(regression_unknown_noise, X, Y)
    q = fit.guide.distribution("w")
    assert isinstance(q, dist.MultivariateNormal) and q.event_shape == (D,)
    off_diagonal = fit.params["w"]["covariance_matrix"] - torch.diag_embed(
        torch.diagonal(fit.params["w"]["covariance_matrix"])
    )
    assert float(off_diagonal.abs().max()) > 1e-6


# ---------------------------------------------------------------------------------------------
# Conjugate but not supported, or not conjugate: refused by what it is
# ---------------------------------------------------------------------------------------------


def factor_analysis(y):
    W = pyro.sample("W", dist.Normal(torch.zeros(D, 2, dtype=F64), 1.0).to_event(2))
    with pyro.plate("n", len(y)):
        z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=F64), 1.0).to_event(1))
        pyro.sample("y", dist.Normal((W @ z.unsqueeze(-1)).squeeze(-1), 1.0).to_event(1), obs=y)


def hmm(y):
    A = pyro.sample("A", dist.Dirichlet(torch.ones(2, 2, dtype=F64)).to_event(1))
    with pyro.plate("states", 2):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=F64), 5.0))
    x = 0
    for t in pyro.markov(range(len(y))):
        x = pyro.sample(f"x{t}", dist.Categorical(Vindex(A)[..., x, :]))
        pyro.sample(f"y{t}", dist.Normal(Vindex(mu)[..., x], 1.0), obs=y[t])


def covariance_given(y):
    P = pyro.sample("P", dist.Wishart(torch.tensor(5.0, dtype=F64), torch.eye(D, dtype=F64)))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(D, dtype=F64),
                                                 covariance_matrix=P), obs=y)  # fmt: skip


def weights_in_a_plate(y):
    with pyro.plate("d", D):
        w = pyro.sample("w", dist.Normal(torch.tensor(0.0, dtype=F64), 2.0))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)


def relu_weights(y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), 2.0).to_event(1))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(X @ torch.relu(w), 1.0), obs=y)


def quadratic_weights(y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), 2.0).to_event(1))
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(X @ w + (w * w).sum(), 1.0), obs=y)


def mixture_of_regressions(y):
    w = pyro.sample("w", dist.Normal(torch.zeros(D, dtype=F64), 2.0).to_event(1))
    with pyro.plate("n", len(y)):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.5, dtype=F64)))
        pyro.sample("y", dist.Normal(X @ w + 3.0 * z, 1.0), obs=y)


@pytest.mark.parametrize("model, data, pattern", [
    (factor_analysis, YV, r"multiplies the latents \['W', 'z'\].*conjugate in each given"),
    (hmm, Y[:6], r"'x0' and 'x2' share enumeration dim.*pyro\.markov"),
    pytest.param(covariance_given, YV, r"'P' in its parameter 'precision_matrix' through a "
                 r"transformation.*pass precision_matrix=",
                 marks=pytest.mark.filterwarnings("ignore:Singular sample detected")),
    (weights_in_a_plate, Y, r"'w'.*supported when the latent is one vector.*to_event\(1\)"),
    (relu_weights, Y, r"'w' in its parameter 'loc' through a transformation"),
    (quadratic_weights, Y, r"'w' in its parameter 'loc' through a transformation"),
    (mixture_of_regressions, Y, r"multiplies the latent vector 'w' by a matrix.*under the "
     r"enumerated \('z',\): conjugate, but not supported"),
], ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
def test_structures_it_cannot_update_are_refused_by_what_they_are(model, data, pattern):
    with pytest.raises(ValueError, match=pattern):
        auto_cavi(model, data)


def test_a_markov_chain_written_without_pyro_markov_runs_mean_field():
    """The refusal's advice holds: the same HMM as a plain loop gets a mean-field q per state,
    and its bound agrees with Pyro's Monte Carlo ELBO of that q."""

    def chain(y):
        A = pyro.sample("A", dist.Dirichlet(torch.ones(2, 2, dtype=F64)).to_event(1))
        with pyro.plate("states", 2):
            mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=F64), 5.0))
        x = 0
        for t in range(len(y)):
            x = pyro.sample(f"x{t}", dist.Categorical(Vindex(A)[..., x, :]))
            pyro.sample(f"y{t}", dist.Normal(Vindex(mu)[..., x], 1.0), obs=y[t])

    y = torch.tensor([-2.0, -2.2, 3.1, 2.9, 3.3, -1.8], dtype=F64)
    fit = auto_cavi(chain, y, check_draws=400)
    assert torch.isfinite(fit.elbo)


# ---------------------------------------------------------------------------------------------
# init of the discrete q's
# ---------------------------------------------------------------------------------------------

XG = torch.cat([torch.randn(20, generator=G, dtype=F64) - 4,
                torch.randn(20, generator=G, dtype=F64) + 4])  # fmt: skip


def gmm(x):
    w = pyro.sample("w", dist.Dirichlet(torch.full((2,), 1.5, dtype=F64)))
    with pyro.plate("k", 2):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=F64), 10.0))
    with pyro.plate("n", len(x)):
        z = pyro.sample("z", dist.Categorical(w))
        pyro.sample("x", dist.Normal(Vindex(mu)[..., z], 1.0), obs=x)


def test_init_sets_the_responsibilities():
    """Given responsibilities, the continuous q's start from one update given them: labels
    that put the first half in cluster 1 give mu[1] near -4 after one sweep."""
    labels = (torch.arange(40) >= 20).long()
    probs = torch.nn.functional.one_hot(1 - labels, 2).to(F64)
    fit = auto_cavi(gmm, XG, init={"z": {"probs": probs}}, num_steps=1, check_draws=0)
    assert fit.params["mu"]["loc"][1] < -3.0 and fit.params["mu"]["loc"][0] > 3.0


@pytest.mark.parametrize("given, pattern", [
    ({"probs": torch.full((40, 3), 1 / 3, dtype=F64)}, r"must have shape \(40, 2\)"),
    ({"probs": torch.full((40, 2), 0.7, dtype=F64)}, "summing to 1"),
    ({"logits": torch.zeros(40, 2)}, r"exactly the key \['probs'\]"),
], ids=["shape", "not normalised", "wrong key"])  # fmt: skip
def test_bad_responsibilities_are_named(given, pattern):
    with pytest.raises(ValueError, match=r"init\['z'\].*" + pattern):
        auto_cavi(gmm, XG, init={"z": given})


def test_a_prior_parameter_in_another_dtype_is_promoted():
    """A float32 df (``torch.tensor(5.0)``) in a float64 model: the accumulators are in the
    model's dtype (this raised "index_add_(): self (Float) and source (Double)")."""

    def mixed(y):
        P = pyro.sample("P", dist.Wishart(torch.tensor(5.0), covariance_matrix=W0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", dist.MultivariateNormal(torch.zeros(D, dtype=F64),
                                                     precision_matrix=P), obs=y)  # fmt: skip

    fit = auto_cavi(mixed, YV)
    assert fit.params["P"]["covariance_matrix"].dtype == F64
    torch.testing.assert_close(fit.elbo, auto_cavi(wishart_precision, YV).elbo)


def test_a_multivariate_normal_latent_in_a_diagonal_normal_equals_the_mvn_likelihood():
    """Normal(mu, s).to_event(1) with mu a MultivariateNormal latent is the same model as
    MultivariateNormal(mu, s^2 I): the same bound (mu enters as X @ mu with X = I, through the
    full-covariance route, not as elements of a diagonal q)."""
    prior = torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=F64)
    rows = torch.tensor([[0.5, -1.0], [1.5, 0.2], [-0.3, 2.2]], dtype=F64)

    def diagonal(y):
        mu = pyro.sample("mu", dist.MultivariateNormal(torch.zeros(2, dtype=F64), prior))
        with pyro.plate("n", 3):
            pyro.sample("y", dist.Normal(mu, 0.5).to_event(1), obs=y)

    def full(y):
        mu = pyro.sample("mu", dist.MultivariateNormal(torch.zeros(2, dtype=F64), prior))
        with pyro.plate("n", 3):
            pyro.sample("y", dist.MultivariateNormal(mu, 0.25 * torch.eye(2, dtype=F64)), obs=y)

    a, b = auto_cavi(diagonal, rows), auto_cavi(full, rows)
    assert abs(float(a.elbo) - float(b.elbo)) < 1e-12 * abs(float(b.elbo))
    torch.testing.assert_close(a.params["mu"]["covariance_matrix"],
                               b.params["mu"]["covariance_matrix"])  # fmt: skip
