"""The structure analysis of ``auto_cavi`` must never take a transformed latent for a conjugate
use: a function that is the identity on part of the latent's support (abs, relu, clamp, max), or
anywhere else (square, exp, a permutation of components, an offset on a rate), fed where the
family expects the latent itself, is refused. Accepting one would print a bound that is not the
model's ELBO (before the probe covered the whole support, ``Normal(mu.abs(), 1)`` and
``Poisson(lam.clamp(max=20))`` gave "ELBOs" 10 and 55 nats above the log evidence).

The transformations that keep the pair conjugate -- an affine map of a Normal loc, a known
factor on a Gamma rate or precision -- are accepted, and then the bound of each one-block model
must equal its log evidence, computed here by quadrature of Pyro's own log joint: accepted and
exact, or refused, never accepted and wrong."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.poutine.util import site_is_subsample

from inference import auto_cavi

# transformations that keep the pair conjugate: accepted, and then exact (see the docstring)
CONJUGATE = {("Normal loc", "v + 0.1"), ("Normal loc", "2 v"), ("Gamma rate", "1.5 v"),
             ("Gamma precision", "1.5 v")}  # fmt: skip

X = torch.tensor([0.3, -1.2, 2.5, 0.8, -0.4, 1.9], dtype=torch.float64)
COUNTS = torch.tensor([3.0, 30.0, 7.0, 12.0, 0.0, 45.0], dtype=torch.float64)
FLIPS = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
LABELS = torch.tensor([0, 2, 1, 2, 2, 0])
ROWS = torch.tensor([[0.5, -1.0], [1.5, 0.2], [-0.3, 2.2]], dtype=torch.float64)

# non-identity functions of a real latent: identity on part of the line, or nowhere
REAL = {
    "abs": torch.abs,
    "relu": torch.relu,
    "clamp(min=0)": lambda v: v.clamp(min=0.0),
    "clamp(max=1)": lambda v: v.clamp(max=1.0),
    "clamp(-5, 5)": lambda v: v.clamp(-5.0, 5.0),
    "max(v, 0.5)": lambda v: torch.maximum(v, torch.tensor(0.5, dtype=v.dtype)),
    "square": torch.square,
    "exp": torch.exp,
    "v + 0.1": lambda v: v + 0.1,
    "2 v": lambda v: 2.0 * v,
}
# non-identity functions of a positive latent (abs and relu are the identity there: not wrong)
POSITIVE = {
    "clamp(max=20)": lambda v: v.clamp(max=20.0),
    "clamp(min=0.5)": lambda v: v.clamp(min=0.5),
    "min(v, 5)": lambda v: torch.minimum(v, torch.tensor(5.0, dtype=v.dtype)),
    "square": torch.square,
    "sqrt": torch.sqrt,
    "v + 0.1": lambda v: v + 0.1,
    "1.5 v": lambda v: 1.5 * v,
}
UNIT = {
    "clamp(0.01, 0.99)": lambda v: v.clamp(0.01, 0.99),
    "clamp(min=0.05)": lambda v: v.clamp(min=0.05),
    "1 - v": lambda v: 1.0 - v,
    "square": torch.square,
    "0.9 v": lambda v: 0.9 * v,
    "sqrt": torch.sqrt,
}
SIMPLEX = {
    "swap columns 0, 1": lambda v: v[..., [1, 0, 2]],
    "swap columns 1, 2": lambda v: v[..., [0, 2, 1]],
    "square, renormalised": lambda v: v.square() / v.square().sum(-1, keepdim=True),
    "clamp(min=0.05), renormalised": lambda v: (
        v.clamp(min=0.05) / v.clamp(min=0.05).sum(-1, keepdim=True)
    ),
    "softmax": lambda v: torch.softmax(v, -1),
}
VECTOR = {
    "swap components": lambda v: v[..., [1, 0]],
    "abs": torch.abs,
    "clamp(max=1)": lambda v: v.clamp(max=1.0),
    "v + 0.1": lambda v: v + 0.1,
}


def normal_loc(f):
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(X)):
            pyro.sample("x", dist.Normal(f(mu), 1.0), obs=X)

    return model


def gamma_rate(f):
    def model():
        lam = pyro.sample("lam", dist.Gamma(2.0, 0.1))
        with pyro.plate("data", len(COUNTS)):
            pyro.sample("s", dist.Poisson(f(lam)), obs=COUNTS)

    return model


def gamma_precision(f):
    def model():
        tau = pyro.sample("tau", dist.Gamma(2.0, 1.0))
        with pyro.plate("data", len(X)):
            pyro.sample("x", dist.Normal(0.0, f(tau) ** -0.5), obs=X)

    return model


def beta_probs(f):
    def model():
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("data", len(FLIPS)):
            pyro.sample("y", dist.Bernoulli(probs=f(p)), obs=FLIPS)

    return model


def dirichlet_probs(f):
    def model():
        theta = pyro.sample("theta", dist.Dirichlet(torch.ones(3, dtype=torch.float64)))
        with pyro.plate("data", len(LABELS)):
            pyro.sample("z", dist.Categorical(probs=f(theta)), obs=LABELS)

    return model


def mvn_loc(f):
    def model():
        mu = pyro.sample(
            "mu", dist.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                          10.0 * torch.eye(2, dtype=torch.float64))
        )  # fmt: skip
        with pyro.plate("data", len(ROWS)):
            pyro.sample(
                "x", dist.MultivariateNormal(f(mu), torch.eye(2, dtype=torch.float64)), obs=ROWS
            )

    return model


CASES = [
    (family, make, name, f)
    for family, make, battery in (
        ("Normal loc", normal_loc, REAL),
        ("Gamma rate", gamma_rate, POSITIVE),
        ("Gamma precision", gamma_precision, POSITIVE),
        ("Beta probs", beta_probs, UNIT),
        ("Dirichlet probs", dirichlet_probs, SIMPLEX),
        ("MultivariateNormal loc", mvn_loc, VECTOR),
    )
    for name, f in battery.items()
]


def _log_evidence(model, site: str, support: str, centre: float) -> float:
    """log p(x) = log of the integral over the one scalar latent of exp(Pyro's log joint), by
    the trapezoid rule on 400,001 points of the real line (u = z, log z or logit z, the
    Jacobian added) over centre +- 40 in u: the integrand is smooth and its mass well inside,
    so the rule's error is far below the 1e-8 the tests ask."""
    u = torch.linspace(centre - 40.0, centre + 40.0, 400_001, dtype=torch.float64)
    if support == "real":
        z, log_jac = u, torch.zeros_like(u)
    elif support == "positive":
        z, log_jac = u.exp(), u
    else:
        z, log_jac = torch.sigmoid(u), torch.nn.functional.logsigmoid(u) * 2 - u
    with pyro.plate("grid", len(u), dim=-2):
        conditioned = pyro.poutine.condition(model, data={site: z.unsqueeze(-1)})
        trace = pyro.poutine.trace(conditioned).get_trace()
    log_joint = sum(s["fn"].log_prob(s["value"]).reshape(len(u), -1).sum(-1)
                    for s in trace.nodes.values()
                    if s["type"] == "sample" and not site_is_subsample(s))  # fmt: skip
    values = log_joint + log_jac
    top = values.max()
    h = float(u[1] - u[0])
    weights = torch.ones_like(u)
    weights[0] = weights[-1] = 0.5
    return float(top + torch.log((weights * (values - top).exp()).sum() * h))


SCALAR = {"Normal loc": ("mu", "real"), "Gamma rate": ("lam", "positive"),
          "Gamma precision": ("tau", "positive"), "Beta probs": ("p", "unit")}  # fmt: skip


@pytest.mark.parametrize(
    "family, make, name, f", CASES, ids=[f"{c[0]}: {c[2]}" for c in CASES]
)  # fmt: skip
def test_a_transformed_latent_is_refused_or_exact_never_wrong(family, make, name, f):
    if (family, name) not in CONJUGATE:
        with pytest.raises(ValueError, match="auto_cavi"):
            auto_cavi(make(f), num_steps=3)
        return
    fit = auto_cavi(make(f), num_steps=3)
    site, support = SCALAR[family]
    q = fit.guide.distribution(site)
    centre = {"real": q.mean, "positive": q.mean.log(), "unit": torch.logit(q.mean)}[support]
    evidence = _log_evidence(make(f), site, support, float(centre))
    assert abs(float(fit.elbo) - evidence) < 1e-8 * abs(evidence)


@pytest.mark.parametrize("family", list(SCALAR))
def test_the_identity_is_accepted_and_exact(family):
    """The same one-block models with the latent itself: the battery above is refused for its
    transformations, not because the model is unsupported; q is the posterior, so the bound is
    the log evidence."""
    make = {"Normal loc": normal_loc, "Gamma rate": gamma_rate,
            "Gamma precision": gamma_precision, "Beta probs": beta_probs}[family]  # fmt: skip
    fit = auto_cavi(make(lambda v: v), num_steps=3)
    site, support = SCALAR[family]
    q = fit.guide.distribution(site)
    centre = {"real": q.mean, "positive": q.mean.log(), "unit": torch.logit(q.mean)}[support]
    evidence = _log_evidence(make(lambda v: v), site, support, float(centre))
    assert abs(float(fit.elbo) - evidence) < 1e-8 * abs(evidence)


@pytest.mark.parametrize("make", [dirichlet_probs, mvn_loc])
def test_the_identity_of_a_vector_latent_is_accepted(make):
    fit = auto_cavi(make(lambda v: v), num_steps=3)
    assert torch.isfinite(fit.elbo)


@pytest.mark.parametrize(
    "scale_of",
    [lambda tau: tau**-0.5, lambda tau: 1 / tau.sqrt(), lambda tau: tau.rsqrt()],
    ids=["tau ** -0.5", "1 / tau.sqrt()", "tau.rsqrt()"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_gamma_precision_is_accepted_however_the_scale_is_written(scale_of, dtype):
    """In float32 too: the decoding tolerance follows the dtype (64 ulps), not a fixed 1e-9,
    which float32's rounding of ``precision ** -0.5`` exceeds."""
    x = X.to(dtype)

    def model():
        tau = pyro.sample("tau", dist.Gamma(torch.tensor(2.0, dtype=dtype), 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(torch.tensor(0.0, dtype=dtype), scale_of(tau)), obs=x)

    fit = auto_cavi(model, num_steps=2)
    # one conjugate block: q is the posterior Gamma(2 + N/2, 1 + sum x^2 / 2)
    expected = torch.tensor([2.0 + len(x) / 2, 1.0 + (x.double() ** 2).sum().item() / 2])
    got = torch.stack([fit.params["tau"]["concentration"], fit.params["tau"]["rate"]]).double()
    torch.testing.assert_close(got, expected.double(), rtol=1e-5, atol=0.0)


def test_the_monte_carlo_check_catches_what_no_probe_showed():
    """The second line of defence: a clamp beyond every probe band (1e4, codes reach 1e3) passes
    the analysis, but the counts put q(lam) near 1e5, where the model clamps, so the bound is
    not this model's ELBO. Pyro's Monte Carlo ELBO of the returned q says so, and auto_cavi
    raises instead of returning it."""
    counts = torch.tensor([95_000.0, 101_000.0, 99_500.0], dtype=torch.float64)

    def clamped(counts):
        lam = pyro.sample("lam", dist.Gamma(2.0, 1e-5))
        with pyro.plate("data", len(counts)):
            pyro.sample("s", dist.Poisson(lam.clamp(max=1e4)), obs=counts)

    assert torch.isfinite(auto_cavi(clamped, counts, num_steps=3, check_draws=0).elbo)
    with pytest.raises(ValueError, match="disagrees with Pyro's Monte Carlo ELBO"):
        auto_cavi(clamped, counts, num_steps=3)


def test_the_check_agrees_where_the_bound_is_exact():
    """One conjugate block: q is the posterior, log p - log q is the same number at every draw,
    and the check passes on a zero standard error (its slack is 1000 ulps of |ELBO|)."""
    fit = auto_cavi(gamma_rate(lambda v: v), num_steps=3, check_draws=50)
    assert torch.isfinite(fit.elbo)


@pytest.mark.parametrize("bad", [1, -1, True, 2.5, "100"])
def test_check_draws_is_validated(bad):
    with pytest.raises(ValueError, match="check_draws must be 0 or an integer >= 2"):
        auto_cavi(gamma_rate(lambda v: v), check_draws=bad)


def _logistic(x, y):
    w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("d", len(x)):
        pyro.sample("y", dist.Bernoulli(logits=w * x), obs=y)


def test_a_refusal_names_the_parameter_as_written_and_points_to_svi():
    """Logistic regression has no conjugate form: the refusal says 'logits' (what the user
    wrote, not the probs torch derives), sends the user to SVI, and cites the table of pairs
    instead of reciting it."""
    x, y = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([1.0, 0.0, 1.0])
    with pytest.raises(ValueError) as refused:
        auto_cavi(_logistic, x, y)
    message = str(refused.value)
    assert "as its 'logits': not conjugate" in message and "'probs'" not in message
    assert "fitted by SVI: an autoguide with Trace_ELBO" in message
    assert "docs/guides/auto-cavi.md" in message and len(message) < 450


def _rate(counts):
    lam = pyro.sample("lam", dist.Gamma(2.0, 0.5))
    with pyro.plate("d", len(counts)):
        pyro.sample("s", dist.Poisson(lam), obs=counts)


@pytest.mark.parametrize(
    "counts, words",
    [
        ([1.0, float("nan"), 3.0], ["'s'", "nan", "[1]", "Poisson"]),
        ([1.5, 2.0], ["'s'", "1.5", "[0]", "IntegerGreaterThan"]),
        ([1.0, -2.0], ["'s'", "-2.0", "[1]"]),
        ([], ["fails when run", "size cannot be zero", "plate of size 0"]),
    ],
    ids=["nan", "fractional count", "negative count", "no data"],
)
def test_bad_observations_are_named_before_any_sweep(counts, words):
    """A NaN used to fail inside torch's validation naming no site, a fractional count was
    accepted (the hand CAVI refuses it), and an empty plate raised a bare ZeroDivisionError."""
    with pytest.raises(ValueError) as refused:
        auto_cavi(_rate, torch.tensor(counts, dtype=torch.float64))
    assert all(word in str(refused.value) for word in words), str(refused.value)


def _mvn(rows):
    mu = pyro.sample(
        "mu", dist.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                      10.0 * torch.eye(2, dtype=torch.float64))
    )  # fmt: skip
    with pyro.plate("data", len(rows)):
        pyro.sample("x", dist.MultivariateNormal(mu, torch.eye(2, dtype=torch.float64)), obs=rows)


def test_vector_observations_are_checked_row_by_row():
    """A MultivariateNormal observation with one NaN coordinate is named by its row."""
    rows = ROWS.clone()
    rows[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"observed site 'x' holds \[nan, 0.2\] at \[1\]"):
        auto_cavi(_mvn, rows)
    assert torch.isfinite(auto_cavi(_mvn, ROWS, num_steps=2).elbo)


def _vector_mean(rows):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(3), 10.0).to_event(1))
    with pyro.plate("data", 5):
        pyro.sample("x", dist.Normal(mu, 1.0).to_event(1), obs=rows)


def test_observations_of_the_wrong_shape_are_named_with_both_shapes():
    """Rows of 4 where the model has 3 coordinates: a RuntimeError from a reshape deep in the
    sweeps before; now the site, the data's shape and the model's."""
    with pytest.raises(ValueError, match=r"site 'x' has shape \(5, 4\).*shape \(5, 3\)"):
        auto_cavi(_vector_mean, torch.randn(5, 4, dtype=torch.float64))


def _float32_prior(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))  # float literals: float32 parameters
    with pyro.plate("d", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_float64_data_under_float32_prior_literals_runs_in_float64_and_is_exact():
    """``Normal(0., 10.)`` with float64 data, as most users write it, failed with an
    ``index_add_`` dtype error. The fit now runs in the promoted dtype, float64, and its bound
    is the exact log evidence, log N(y; 0, I + 100 11^T) (0 and 10 are exact in float32, so
    the float64 answer is exact: 1e-12 relative)."""
    y = torch.tensor([0.3, -1.2, 2.5, 0.8], dtype=torch.float64)
    fit = auto_cavi(_float32_prior, y)
    cov = torch.eye(4, dtype=torch.float64) + 100.0
    evidence = dist.MultivariateNormal(torch.zeros(4, dtype=torch.float64), cov).log_prob(y)
    assert fit.elbo.dtype == torch.float64
    assert fit.elbo.item() == pytest.approx(evidence.item(), rel=1e-12)
