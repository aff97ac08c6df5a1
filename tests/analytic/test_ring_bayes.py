"""The Bayesian ring mixture's hand CAVI (analytic.ring_bayes), checked by independent routes:
Monte Carlo with torch.distributions for the ELBO, autograd for each update's optimality."""

import math

import pytest
import torch
import torch.distributions as td

from analytic.ring import ring_means, sample
from analytic.ring_bayes import BayesRingPrior, RingMeanField, cavi_step, elbo

PRIOR = BayesRingPrior(1.7, (0.3, -0.2), 0.05)  # c0 != 1 and nu != 0: no term vanishes
K = 4


@pytest.fixture
def data():
    X, _ = sample(60, ring_means(K, 3.0).double(), seed=1)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(60, K, generator=g, dtype=torch.float64), -1)
    q = RingMeanField(
        probs, 1.0 + 3 * torch.rand(K, generator=g, dtype=torch.float64),
        torch.randn(K, 2, generator=g, dtype=torch.float64),
        0.5 + torch.rand(K, generator=g, dtype=torch.float64),
    )  # fmt: skip
    return X.double(), q


def test_elbo_matches_monte_carlo(data):
    X, q = data
    torch.manual_seed(0)
    S = 20000
    pi = td.Dirichlet(q.concentration).sample((S,))
    mu = td.Normal(q.loc, q.precision.rsqrt()[:, None]).sample((S,))
    z = td.Categorical(q.probs).sample((S,))
    nu = torch.tensor(PRIOR.loc, dtype=torch.float64)
    log_p = (
        td.Dirichlet(torch.full((K,), PRIOR.concentration, dtype=torch.float64)).log_prob(pi)
        + td.Normal(nu, PRIOR.precision**-0.5).log_prob(mu).sum((-1, -2))
        + torch.log(torch.gather(pi, 1, z)).sum(-1)
        + td.Normal(torch.gather(mu, 1, z[..., None].expand(S, 60, 2)), 1.0)
        .log_prob(X)
        .sum((-1, -2))
    )
    log_q = (
        td.Dirichlet(q.concentration).log_prob(pi)
        + td.Normal(q.loc, q.precision.rsqrt()[:, None]).log_prob(mu).sum((-1, -2))
        + td.Categorical(q.probs).log_prob(z).sum(-1)
    )
    w = log_p - log_q
    se = w.std() / math.sqrt(S)
    assert abs(w.mean() - elbo(X, q, PRIOR)) < 4 * se  # 4 standard errors of the MC mean


def test_each_update_zeroes_the_gradient_of_its_block(data):
    X, q = data
    new, _ = cavi_step(X, q, PRIOR)
    c = new.concentration.clone().requires_grad_()
    m = new.loc.clone().requires_grad_()
    p = new.precision.clone().requires_grad_()
    value = elbo(X, RingMeanField(new.probs, c, m, p), PRIOR)
    for g in torch.autograd.grad(value, (c, m, p)):
        assert g.abs().max() < 1e-8
    # q(z): the gradient along the simplex (logits) is zero at the update given the old globals
    logits = torch.log(new.probs).clone().requires_grad_()
    at_old = RingMeanField(torch.softmax(logits, -1), q.concentration, q.loc, q.precision)
    (g,) = torch.autograd.grad(elbo(X, at_old, PRIOR), logits)
    assert g.abs().max() < 1e-8


def test_elbo_never_decreases(data):
    X, q = data
    values = []
    for _ in range(15):
        q, value = cavi_step(X, q, PRIOR)
        values.append(value)
    values = torch.stack(values)
    assert bool((values[1:] - values[:-1] >= -1e-9 * values.abs()[1:]).all())


def test_bad_prior_is_refused(data):
    X, q = data
    with pytest.raises(ValueError, match="prior.concentration"):
        elbo(X, q, BayesRingPrior(0.0, (0.0, 0.0), 1.0))


def test_elbo_equals_its_terms_by_torch_distributions(data):
    """ELBO = E log p(z | pi) + E log p(x | z, mu) + H[q(z)] - KL(q(pi) || p(pi))
    - KL(q(mu) || p(mu)), the KLs by torch.distributions.kl_divergence, E log pi_k as the
    gradient of log B(c) (autograd), E log N(x | mu, I) = log N(x | m, I) - 1/p: 1e-10."""
    X, q = data
    c = q.concentration.clone().requires_grad_()
    log_b = torch.lgamma(c).sum() - torch.lgamma(c.sum())
    (e_log_pi,) = torch.autograd.grad(log_b, c)
    nu = torch.tensor(PRIOR.loc, dtype=torch.float64)
    kl_pi = td.kl_divergence(
        td.Dirichlet(q.concentration),
        td.Dirichlet(torch.full((K,), PRIOR.concentration, dtype=torch.float64)),
    )
    q_mu = td.Normal(q.loc, q.precision.rsqrt()[:, None])
    kl_mu = td.kl_divergence(q_mu, td.Normal(nu.expand(K, 2), PRIOR.precision**-0.5)).sum()
    log_n = td.Normal(q.loc[None], 1.0).log_prob(X[:, None]).sum(-1)  # (N, K)
    expected = (
        (q.probs.sum(0) * e_log_pi).sum()
        + (q.probs * (log_n - 1.0 / q.precision)).sum()
        + td.Categorical(q.probs).entropy().sum()
        - kl_pi
        - kl_mu
    )
    assert abs(elbo(X, q, PRIOR) - expected) < 1e-10 * abs(expected)


@pytest.mark.parametrize(
    "prior,pattern",
    [
        ((1.0, (0.0, 0.0), 1.0), "prior must be a BayesRingPrior, got tuple"),
        (BayesRingPrior(1.0, (0.0, 0.0), -2.0), "prior.precision"),
        (BayesRingPrior(1.0, (0.0,), 1.0), r"prior.loc must be 2 finite numbers, got \(0.0,\)"),
        (
            BayesRingPrior(1.0, (0.0, math.inf), 1.0),
            r"prior.loc must be 2 finite numbers, got \(0.0, inf\)",
        ),
        (BayesRingPrior(1.0, (0.0, "a"), 1.0), "prior.loc must be 2 finite numbers, got 'a'"),
    ],
)
def test_bad_priors_are_named(data, prior, pattern):
    X, q = data
    with pytest.raises(ValueError, match=pattern):
        cavi_step(X, q, prior)


def test_bad_points_are_named(data):
    _, q = data
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        elbo(torch.zeros(5, 3, dtype=torch.float64), q, PRIOR)


@pytest.mark.parametrize(
    "X, prior, message",
    [
        (
            None,
            BayesRingPrior(0.0, (0.0, 0.0), 1.0),
            "prior.concentration must be a finite number > 0, got 0.0",
        ),
        (
            None,
            BayesRingPrior(1.0, (0.0, 0.0), -2.0),
            "prior.precision must be a finite number > 0, got -2.0",
        ),
        ([[0.0, math.nan]], PRIOR, "X must be finite"),
    ],
    ids=["concentration", "precision", "X"],
)
def test_refusals_name_the_field_first(data, X, prior, message):
    """Each refusal starts with the name of the offending field (a regex search for the name
    alone would also pass a message that merely contains it)."""
    points, q = data
    with pytest.raises(ValueError) as info:
        elbo(points if X is None else torch.tensor(X), q, prior)
    assert str(info.value).startswith(message)


def test_the_prior_mean_takes_the_datas_float64_under_a_float32_default(data, float32_default):
    """The prior mean nu = (0.3, -0.2) is made in the data's dtype, not torch's default: the
    ELBO of float64 data equals the one computed under a float64 default (0.3 is not a float32
    number: a float32 nu moves the ELBO by ~1e-9 relative)."""
    X, q = data
    value = elbo(X, q, PRIOR)
    torch.set_default_dtype(torch.float64)
    assert value.item() == elbo(X, q, PRIOR).item()
