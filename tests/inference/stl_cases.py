"""Models we did not design for STL, and Pyro's own guides, for the path-derivative checks.

Models (float64; data fixed by seed): a LogNormal latent seen through its log (the issue's
minimal case), Gamma-Poisson (positive), Beta-Bernoulli (interval), Dirichlet-categorical
(simplex), the centred eight-schools model (hierarchical, a HalfCauchy scale), an LKJ-Cholesky
correlation (correlation Cholesky), Pyro's Bayesian-regression tutorial model (a PyroModule with
PyroSample priors, sigma ~ Uniform(0, 10)), and Pyro's GMM tutorial model (Z enumerated).

``gradient_draws`` returns independent gradient draws of any estimator at the guide's current
parameters, collected the way ``pyro.infer.SVI`` collects them (the params the loss touched).
"""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import autoguide
from pyro.nn import PyroModule, PyroSample


def _data(seed: int, fn):
    g = torch.Generator().manual_seed(seed)
    return fn(g)


# ---- models: name -> (model, args, max_plate_nesting) ---------------------------------------


def lognormal(x):
    z = pyro.sample("z", dist.LogNormal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z.log(), 1.0), obs=x)


def gamma_poisson(counts):
    rate = pyro.sample("rate", dist.Gamma(2.5, 1.5))
    with pyro.plate("data", counts.shape[0]):
        pyro.sample("obs", dist.Poisson(rate), obs=counts)


def beta_bernoulli(flips):
    p = pyro.sample("p", dist.Beta(1.5, 2.5))
    with pyro.plate("data", flips.shape[0]):
        pyro.sample("obs", dist.Bernoulli(p), obs=flips)


def dirichlet_categorical(labels):
    probs = pyro.sample("probs", dist.Dirichlet(torch.tensor([1.5, 2.5, 0.7], dtype=labels.dtype)))
    with pyro.plate("data", labels.shape[0]):
        pyro.sample("obs", dist.Categorical(probs), obs=labels.long())


EIGHT_SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
EIGHT_SCHOOLS_SIGMA = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=torch.float64)


def eight_schools(y, sigma):
    """Centred parameterisation (Gelman et al., BDA 5.5; Pyro's and Stan's examples)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", y.shape[0]):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_subsampled(y, sigma):
    """The centred model with minibatches of 4 schools (likelihood and theta scaled by 8/4)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", y.shape[0], subsample_size=4) as idx:
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma[idx]), obs=y[idx])


def lkj_cholesky(x):
    L = pyro.sample("L", dist.LKJCholesky(3, torch.tensor(1.5, dtype=x.dtype)))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.MultivariateNormal(torch.zeros_like(x[0]), scale_tril=L), obs=x)


class BayesianRegression(PyroModule):
    """Pyro's Bayesian-regression tutorial model (pyro.ai/examples/bayesian_regression.html)."""

    def __init__(self, in_features: int, out_features: int = 1) -> None:
        super().__init__()
        self.linear = PyroModule[torch.nn.Linear](in_features, out_features).double()
        self.linear.weight = PyroSample(
            dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2)
        )
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def gmm(data, K=2):
    """Pyro's GMM tutorial model (pyro.ai/examples/gmm.html), Z summed out by enumeration."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K, dtype=data.dtype)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample(
            "assignment", dist.Categorical(weights), infer={"enumerate": "parallel"}
        )
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def _regression_data(g):
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.5, -0.7, 0.3], dtype=torch.float64) + 0.4
    return x, y + 0.5 * torch.randn(30, generator=g, dtype=torch.float64)


def _lkj_data(g):
    L = torch.linalg.cholesky(
        torch.tensor([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]], dtype=torch.float64)
    )
    return (torch.randn(40, 3, generator=g, dtype=torch.float64) @ L.T,)


MODELS = {
    "lognormal": lambda: (lognormal, (torch.tensor(1.2, dtype=torch.float64),), 0),
    "gamma_poisson": lambda: (
        gamma_poisson,
        (
            _data(
                1, lambda g: torch.poisson(torch.full((20,), 3.0, dtype=torch.float64), generator=g)
            ),
        ),
        1,
    ),
    "beta_bernoulli": lambda: (
        beta_bernoulli,
        (
            _data(
                2,
                lambda g: torch.bernoulli(torch.full((25,), 0.3, dtype=torch.float64), generator=g),
            ),
        ),
        1,
    ),
    "dirichlet_categorical": lambda: (
        dirichlet_categorical,
        (
            _data(
                3,
                lambda g: torch.multinomial(
                    torch.tensor([0.2, 0.5, 0.3]), 30, replacement=True, generator=g
                ).double(),
            ),
        ),
        1,
    ),
    "eight_schools": lambda: (eight_schools, (EIGHT_SCHOOLS_Y, EIGHT_SCHOOLS_SIGMA), 1),
    "eight_schools_subsampled": lambda: (
        eight_schools_subsampled,
        (EIGHT_SCHOOLS_Y, EIGHT_SCHOOLS_SIGMA),
        1,
    ),
    "lkj_cholesky": lambda: (lkj_cholesky, _data(4, _lkj_data), 1),
    "bayesian_regression": lambda: (BayesianRegression(3), _data(5, _regression_data), 1),
    "gmm": lambda: (
        gmm,
        (torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0], dtype=torch.float64),),
        1,
    ),
}


# ---- guides: name -> builder(model) ----------------------------------------------------------


def _without_enumerated(model):
    """The GMM tutorial's trick: the guide sees only the global sites (Z is enumerated)."""
    return poutine.block(model, hide=["assignment"]) if model is gmm else model


def _list_guide(model):
    """AutoGuideList: the first latent by AutoNormal, the others by AutoDelta (a point mass
    after a random draw, which STL must not mistake for a pushforward)."""
    first = next(
        name
        for name, site in poutine.trace(model).get_trace(*_ARGS[0]).nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    )
    guide = autoguide.AutoGuideList(model)
    guide.append(autoguide.AutoNormal(poutine.block(model, expose=[first])))
    guide.append(autoguide.AutoDelta(poutine.block(model, hide=[first])))
    return guide


_ARGS = [()]
_median = (
    autoguide.init_to_median
)  # the args of the model being built (AutoGuideList needs a trace to split it)

GUIDES = {
    "AutoNormal": autoguide.AutoNormal,
    "AutoDiagonalNormal": autoguide.AutoDiagonalNormal,
    "AutoMultivariateNormal": autoguide.AutoMultivariateNormal,
    "AutoLowRankMultivariateNormal": lambda m: autoguide.AutoLowRankMultivariateNormal(m, rank=2),
    "AutoIAFNormal": lambda m: autoguide.AutoIAFNormal(m, num_transforms=1),
    # messenger guides start at the prior mean by default: infinite for a HalfCauchy
    "AutoNormalMessenger": lambda m: autoguide.AutoNormalMessenger(m, init_loc_fn=_median),
    "AutoHierarchicalNormalMessenger": lambda m: autoguide.AutoHierarchicalNormalMessenger(
        m, init_loc_fn=_median
    ),
    "AutoRegressiveMessenger": lambda m: autoguide.AutoRegressiveMessenger(m, init_loc_fn=_median),
    "AutoGuideList": _list_guide,
    "AutoDelta": autoguide.AutoDelta,
    "AutoLaplaceApproximation": autoguide.AutoLaplaceApproximation,
}
# combinations Pyro itself does not run (not STL's doing)
PYRO_UNSUPPORTED = {
    ("gmm", "AutoNormalMessenger"),  # TraceEnum_ELBO does not support GuideMessenger
    ("gmm", "AutoHierarchicalNormalMessenger"),
    ("gmm", "AutoRegressiveMessenger"),
    ("lkj_cholesky", "AutoHierarchicalNormalMessenger"),  # NotImplementedError in Pyro
    # its loc adds the prior's mean, which a HalfCauchy does not have: NaN before any step
    ("eight_schools", "AutoHierarchicalNormalMessenger"),
    ("eight_schools_subsampled", "AutoHierarchicalNormalMessenger"),
}


# models written, like Pyro's tutorials, without vectorised particles in mind
NOT_VECTORIZABLE = ("bayesian_regression", "gmm")


def particles(model_name: str, num: int = 8) -> dict:
    """ELBO keyword arguments: ``num`` vectorised particles, or num / 2 in a loop for the
    models that cannot take an extra batch dimension."""
    if model_name in NOT_VECTORIZABLE:
        return {"num_particles": max(1, num // 2), "vectorize_particles": False}
    return {"num_particles": num, "vectorize_particles": True}


def fit(model, guide, args, nesting: int, num_steps: int, elbo=None, lr: float = 0.05) -> None:
    """Move the guide to a fitted point: ``num_steps`` of Adam on Trace_ELBO (or ``elbo``)."""
    from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO

    if elbo is None:
        cls = TraceEnum_ELBO if model is gmm else Trace_ELBO
        name = "gmm" if model is gmm else type(model).__name__
        kw = particles("bayesian_regression" if name == "BayesianRegression" else name)
        elbo = cls(max_plate_nesting=nesting, **kw)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), elbo)
    for _ in range(num_steps):
        svi.step(*args)


REFUSED_GUIDES = {
    "AutoStructured": autoguide.AutoStructured,
    "AutoGaussian": autoguide.AutoGaussian,
}


def build(model_name: str, guide_name: str, seed: int = 0):
    """(model, guide, args, max_plate_nesting), the guide initialised by one call."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model, args, nesting = MODELS[model_name]()
    _ARGS[0] = args
    make = {**GUIDES, **REFUSED_GUIDES}[guide_name]
    guide = make(_without_enumerated(model))
    if hasattr(guide, "double"):
        guide.double()
    with poutine.block(), warnings.catch_warnings():
        # Pyro's advice for a one-dimensional latent, not a fault
        warnings.filterwarnings("ignore", "ConditionalAutoRegressiveNN input_dim = 1")
        guide(*args)  # create the parameters
    if hasattr(guide, "double"):
        guide.double()
    return model, guide, args, nesting


def gradient_draws(elbo, model, guide, args, num_draws: int, seed: int):
    """(num_draws, P) gradient draws of ``elbo`` (loss = -ELBO) w.r.t. every parameter it
    touches, flattened and concatenated in a fixed order; and the parameter names."""
    pyro.set_rng_seed(seed)
    draws, names = [], None
    for _ in range(num_draws):
        with poutine.trace(param_only=True) as tr:
            loss = elbo.differentiable_loss(model, guide, *args)
        params = {n: s["value"].unconstrained() for n, s in tr.trace.nodes.items()}
        names = names or sorted(params)
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        draws.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(params[n])).reshape(-1)
                    for n, g in zip(names, grads)
                ]
            )  # fmt: skip
        )
    return torch.stack(draws), names


def z_scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per element, (mean a - mean b) / its standard error, for independent draws a and b."""
    se2 = a.var(0) / a.shape[0] + b.var(0) / b.shape[0]
    diff = a.mean(0) - b.mean(0)
    return torch.where(se2 > 0, diff / se2.clamp_min(1e-300).sqrt(), torch.zeros_like(diff))


def max_abs(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0
