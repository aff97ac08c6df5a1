"""The path-derivative (STL) estimator: zero variance at the posterior, unbiased elsewhere;
which guide sites it changes, which draws it holds, and when it runs the guide a second time.

The site checks at the end are exact equalities at a fixed seed: where STL leaves every site
as it is (a point mass has no score term; an enumerated site is summed over, not drawn), its
gradient *is* the base estimator's, bit for bit, so the tolerance is float64 rounding (1e-12).
(They live here, beside the other STL checks, because the mutation run's test selection
(pyproject ``[tool.mutmut]``) lists this file.)
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from analytic import conjugate, expgauss
from analytic.earthquake import Hyperparameters, cavi
from analytic.earthquake import elbo as earthquake_elbo
from guides.conjugate import GaussianGuide
from guides.earthquake import EarthquakeGuide
from guides.expgauss import ExpGaussGuide
from inference.estimators import get_elbo
from inference.stl import StickingTheLanding
from inference.stl.guide import _reaches
from inference.svi import fit_svi, gradient_moments
from ppl_models import conjugate as conjugate_model
from ppl_models import earthquake as earthquake_model
from ppl_models.expgauss import ExpGaussModel

OBS_SCALE = 0.5
PRIOR_1D = torch.eye(1)
PRIOR_2D = torch.tensor([[1.0, 0.0], [0.8, 0.6]])


def _data(prior):
    x, _ = conjugate_model.simulate(prior, OBS_SCALE, 10, seed=0)
    return x, prior, OBS_SCALE


@pytest.mark.parametrize("prior, full", [(PRIOR_1D, False), (PRIOR_2D, True)])
def test_stl_gradient_vanishes_at_exact_posterior(prior, full):
    """q = the exact posterior (1-D normal; 2-D with a full-rank guide): every STL gradient
    draw is 0 up to rounding (variance <= 1e-20), while Trace_ELBO's variance is > 1."""
    args = _data(prior)
    loc, scale_tril = conjugate.posterior(*args)
    guide = GaussianGuide(loc, scale_tril, full=full)
    stl = gradient_moments(conjugate_model.model, guide, get_elbo("stl"), *args, num_draws=200)
    trace = gradient_moments(conjugate_model.model, guide, get_elbo("trace"), *args, num_draws=200)
    assert max(v.max().item() for v in stl.variance.values()) <= 1e-20
    assert max(v.max().item() for v in trace.variance.values()) > 1


def test_stl_reports_the_ordinary_elbo_value():
    """Same seed, same draws: STL's loss value equals Trace_ELBO's to the last bit; at the
    exact posterior both equal -log p(x) (rtol 1e-12)."""
    args = _data(PRIOR_2D)
    guide = GaussianGuide(*conjugate.posterior(*args))
    values = []
    for name in ("trace", "stl"):
        pyro.set_rng_seed(1)
        values.append(get_elbo(name)(conjugate_model.model, guide)(*args).item())
    assert values[0] == values[1]
    assert values[1] == pytest.approx(-conjugate.log_evidence(*args).item(), rel=1e-12)


def test_stl_traces_are_the_bases_with_the_path_derivative_guide():
    """Pyro's ``_get_trace`` hook: same seed, the same sample values as the base's traces, and
    the guide's site distributions wrapped for the path derivative."""
    from inference.stl.guide import _PathDerivative

    args = _data(PRIOR_2D)
    guide = GaussianGuide(*conjugate.posterior(*args))
    traces = []
    for name in ("trace", "stl"):
        pyro.set_rng_seed(3)
        traces.append(get_elbo(name)._get_trace(conjugate_model.model, guide, args, {}))
    (model_t, guide_t), (model_s, guide_s) = traces
    assert torch.equal(guide_s.nodes["z"]["value"], guide_t.nodes["z"]["value"])
    assert torch.equal(model_s.nodes["z"]["value"], model_t.nodes["z"]["value"])
    assert isinstance(guide_s.nodes["z"]["fn"], _PathDerivative)
    assert not isinstance(guide_t.nodes["z"]["fn"], _PathDerivative)


def _assert_unbiased(moments, exact: dict[str, torch.Tensor]):
    """Every element of the mean gradient within 4 standard errors of ``exact``."""
    for name, se in moments.standard_error().items():
        diff = (moments.mean[name] - exact[name]).abs()
        assert bool((diff <= 4 * se + 1e-12).all()), (name, moments.mean[name], exact[name], se)


def test_stl_is_unbiased_on_the_conjugate_model():
    """Away from the posterior, STL's and Trace_ELBO's mean gradients (400 draws x 16 particles)
    both match autograd of the closed-form ELBO within 4 standard errors."""
    args = _data(PRIOR_2D)
    loc = torch.tensor([0.3, -0.4])
    tril = torch.tensor([[0.5, 0.0], [0.2, 0.3]])
    guide = GaussianGuide(loc, tril, full=True)
    value = conjugate.elbo(*args, guide.loc, guide.scale_tril)
    names = ["loc", "log_diag", "strict_lower"]
    grads = torch.autograd.grad(value, [getattr(guide, n) for n in names])
    exact = {f"guide.{n}": g for n, g in zip(names, grads)}
    for name in ("stl", "trace"):
        elbo = get_elbo(name, num_particles=16, vectorize_particles=True, max_plate_nesting=1)
        moments = gradient_moments(conjugate_model.model, guide, elbo, *args, num_draws=400)
        _assert_unbiased(moments, exact)


def test_stl_is_unbiased_on_expgauss():
    """theta and phi gradients (through log theta, log phi) against the closed form
    elbo_grad x (theta, phi), 400 draws x 16 particles, within 4 SE."""
    x, theta, phi = torch.tensor([1.3]), 0.7, 2.5
    model, guide = ExpGaussModel(theta), ExpGaussGuide(torch.tensor([phi]))
    d_theta, d_phi = expgauss.elbo_grad(x, theta, phi)
    exact = {"model.log_theta": theta * d_theta[0], "guide.log_phi": phi * d_phi}
    elbo = get_elbo("stl", num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    _assert_unbiased(gradient_moments(model, guide, elbo, x, num_draws=400), exact)


class AmortisedGuide(torch.nn.Module):
    """q(z | x) = N(W mean(x) + b, diag exp(2 c)): an encoder from the data to q's parameters."""

    def __init__(self, D: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(D, D)
        self.log_scale = torch.nn.Parameter(torch.full((D,), -1.0))

    def params(self, x):
        return self.encoder(x.mean(0)), self.log_scale.exp()

    def forward(self, x, *args):
        loc, scale = self.params(x)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def test_stl_is_unbiased_for_an_amortised_guide():
    """Encoder weights' mean gradient equals autograd of the closed-form ELBO composed with the
    encoder (400 draws x 16 particles, 4 SE), for STL and Trace_ELBO."""
    torch.manual_seed(0)
    args = _data(PRIOR_2D)
    guide = AmortisedGuide(2)
    loc, scale = guide.params(args[0])
    value = conjugate.elbo(*args, loc, torch.diag_embed(scale))
    names = ["guide.encoder.weight", "guide.encoder.bias", "guide.log_scale"]
    tensors = [guide.encoder.weight, guide.encoder.bias, guide.log_scale]
    exact = dict(zip(names, torch.autograd.grad(value, tensors)))
    for name in ("stl", "trace"):
        elbo = get_elbo(name, num_particles=16, vectorize_particles=True, max_plate_nesting=1)
        moments = gradient_moments(conjugate_model.model, guide, elbo, *args, num_draws=400)
        _assert_unbiased(moments, exact)


@pytest.fixture(scope="module")
def quake():
    hp = Hyperparameters(2, tau=1.0, rho=0.01, alpha=5.0, beta=0.5)
    X, S, *_ = earthquake_model.simulate(hp, 60, seed=0)
    q = cavi(X, S, hp, seed=0, num_init=1).q
    # off the optimum, so the gradient is not zero: shift the means and shrink the precisions
    q = q._replace(loc=q.loc + 0.3, precision=q.precision * 0.5)
    return hp, X, S, q


def test_stl_with_enumeration_equals_trace_enum_in_expectation(quake):
    """Earthquake guide, Z enumerated: STL (base enum) and TraceEnum_ELBO mean gradients (300
    draws x 8 particles) both equal autograd of the closed-form ELBO at the guide's mean field,
    within 4 SE."""
    hp, X, S, q = quake
    guide = EarthquakeGuide(q, enumerate=True)
    value = earthquake_elbo(X, S, hp, guide.mean_field(differentiable=True))
    named = [(f"guide.{n}", p) for n, p in guide.named_parameters()]
    exact = dict(zip([n for n, _ in named], torch.autograd.grad(value, [p for _, p in named])))
    kw = {"num_particles": 8, "vectorize_particles": True, "max_plate_nesting": 1}
    for elbo in (get_elbo("stl", base="enum", **kw), get_elbo("enum", **kw)):
        moments = gradient_moments(earthquake_model.model, guide, elbo, X, S, hp, num_draws=300)
        _assert_unbiased(moments, exact)


def test_stl_keeps_minibatch_scaling(quake):
    """With subsample_size, STL's loss value equals TraceEnum_ELBO's at the same seed (the
    N / B scale of the likelihood is applied identically)."""
    hp, X, S, q = quake
    guide = EarthquakeGuide(q, enumerate=True)
    values = []
    for elbo in (get_elbo("stl", base="enum", max_plate_nesting=1),
                 get_elbo("enum", max_plate_nesting=1)):  # fmt: skip
        pyro.set_rng_seed(3)
        values.append(elbo(earthquake_model.model, guide)(X, S, hp, subsample_size=20).item())
    assert values[0] == pytest.approx(values[1], rel=1e-12)


@pytest.mark.parametrize(
    "family",
    [
        lambda p: dist.Normal(p[0], p[1].exp()),
        lambda p: dist.Gamma(p[0].exp(), p[1].exp()),
        lambda p: dist.Exponential(p[0].exp()),
    ],
)
def test_score_function_has_zero_mean(family):
    """E_q[grad_phi log q_phi(z)] = 0: the term STL drops. 10^5 draws, within 4 SE per
    parameter (the per-draw scores computed by vectorised autograd)."""
    n = 100_000
    phi = torch.tensor([0.4, -0.3])
    z = family(phi).sample((n,))
    per_draw_phi = phi.expand(n, 2).clone().requires_grad_(True)  # one copy per draw
    (per_draw,) = torch.autograd.grad(family(per_draw_phi.T).log_prob(z).sum(), per_draw_phi)
    mean, se = per_draw.mean(0), per_draw.std(0) / math.sqrt(len(z))
    assert bool((mean.abs() < 4 * se + 1e-12).all()), (mean, se)


def test_svi_with_stl_sticks_the_landing_on_the_conjugate_posterior():
    """Full-rank guide from a distant start, constant learning rate 0.05, 1500 steps: STL's
    noise vanishes at the optimum, so it lands within 1e-3 of the exact posterior mean and
    Cholesky factor (posterior sds ~0.15); Trace_ELBO with the same settings keeps jittering
    (measured: 0.1 away), the contrast of Roeder et al.'s title."""
    args = _data(PRIOR_2D)
    loc, scale_tril = conjugate.posterior(*args)
    errors = {}
    for name in ("stl", "trace"):
        guide = GaussianGuide(torch.tensor([3.0, -3.0]), torch.eye(2), full=True)
        fit_svi(conjugate_model.model, guide, get_elbo(name), *args,
                num_steps=1500, lr=0.05, seed=0, progress=False)  # fmt: skip
        errors[name] = max(
            (guide.loc - loc).abs().max().item(), (guide.scale_tril - scale_tril).abs().max().item()
        )
    assert errors["stl"] < 1e-3
    assert errors["trace"] > 10 * errors["stl"]


def test_stl_refuses_the_analytic_kl_base_with_advice():
    """The meanfield refusal word for word: why (no sampled log q) and what to use instead."""
    with pytest.raises(ValueError) as refused:
        get_elbo("stl", base="meanfield")
    assert str(refused.value) == (
        "estimator 'stl' cannot use base 'meanfield': TraceMeanField_ELBO computes KL(q || p) "
        "analytically, so there is no sampled log q(z) whose score term STL could drop (the "
        "analytic KL's gradient is already exact). Use 'meanfield' on its own, or 'stl' with "
        "base 'trace' (or 'enum' for enumerated guides)"
    )
    with pytest.raises(ValueError, match="stl base must be one of"):
        StickingTheLanding(base="graph")
    with pytest.raises(ValueError, match="'base' is an option of estimator 'stl' only"):
        get_elbo("trace", base="enum")


def test_stl_works_in_pyro_svi_with_pyro_params():
    """The classic interface: SVI(model, guide, optim, loss=get_elbo('stl')) with pyro.param
    sites; at the exact posterior a step leaves the parameters where they are."""
    args = _data(PRIOR_1D)
    loc, scale_tril = conjugate.posterior(*args)

    def guide(*_):
        m = pyro.param("m", loc.clone())
        s = pyro.param("s", scale_tril[0].clone(), constraint=dist.constraints.positive)
        pyro.sample("z", dist.Normal(m, s).to_event(1))

    svi = pyro.infer.SVI(conjugate_model.model, guide, pyro.optim.SGD({"lr": 0.1}), get_elbo("stl"))
    loss = svi.step(*args)
    assert loss == pytest.approx(-conjugate.log_evidence(*args).item(), rel=1e-10)
    torch.testing.assert_close(pyro.param("m").detach(), loc, rtol=0, atol=1e-12)


def test_every_stl_entry_point_passes_keyword_arguments_on():
    """A model and guide with a required keyword argument: loss, differentiable_loss and
    loss_and_grads of STL each equal the base estimator's value at the same seed (loss and
    differentiable_loss exactly: STL's value is the base's), and the keyword changes it."""

    def model(x, *, noise):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, noise), obs=x)

    def guide(x, *, noise):
        pyro.sample("z", dist.Normal(pyro.param("m", torch.tensor(0.2)), 0.7))

    x = torch.tensor(1.3)
    stl, base = StickingTheLanding(), pyro.infer.Trace_ELBO()
    values = {}
    for name in ("loss", "differentiable_loss", "loss_and_grads"):
        for noise in (0.5, 2.0):
            got = []
            for estimator in (stl, base):
                pyro.set_rng_seed(3)
                value = getattr(estimator, name)(model, guide, x, noise=noise)
                got.append(float(torch.as_tensor(value).detach()))
            assert got[0] == got[1]
            values[name, noise] = got[0]
        assert values[name, 0.5] != values[name, 2.0]


def test_stl_passes_keyword_arguments_to_the_replayed_structured_guide():
    """A structured guide (b's distribution depends on the draw of a) runs a second time
    with its draws held, and so does Pyro's AutoHierarchicalNormalMessenger (a GuideMessenger,
    which runs the model itself); that run must get the keyword arguments too: a required
    keyword would otherwise fail, and STL's value must equal the base's at the same seed."""

    def model(x, *, noise):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(a, 1.0))
        pyro.sample("x", dist.Normal(a + b, noise), obs=x)

    def structured(x, *, noise):
        a = pyro.sample("a", dist.Normal(pyro.param("m", torch.tensor(0.3)), 0.8))
        pyro.sample("b", dist.Normal(0.5 * a, noise))

    x = torch.tensor(1.3)
    messenger = pyro.infer.autoguide.AutoHierarchicalNormalMessenger(model)  # b's prior hangs on a
    for guide in (structured, messenger):
        values = []
        for noise in (0.5, 2.0):
            guide(x, noise=noise)  # creates an autoguide's parameters (drawing to start)
            got = []
            for estimator in (StickingTheLanding(), pyro.infer.Trace_ELBO()):
                pyro.set_rng_seed(3)
                got.append(estimator.loss_and_grads(model, guide, x, noise=noise))
            assert got[0] == pytest.approx(got[1], rel=1e-12)
            values.append(got[0])
        assert values[0] != values[1]


def test_the_tensors_a_distribution_holds_are_found_three_attribute_levels_deep():
    """``_tensors_of`` (which parameters a guide site's distribution depends on) looks
    through attributes, lists and tuples to depth 3, not into classes, and no deeper."""
    from types import SimpleNamespace as NS

    from inference.stl.guide import _tensors_of

    t = [torch.tensor(float(i)) for i in range(6)]
    obj = NS(
        a=t[0],  # depth 0
        pair=(t[1], NS(b=t[2])),  # depth 0 in a tuple; depth 1
        deep=NS(c=NS(d=NS(e=t[3], f=NS(g=t[4])))),  # depth 3; depth 4: not reached
        kind=type("K", (), {"h": t[5]}),  # a class: its attributes are not the object's
        label="x",
    )
    found = list(_tensors_of(obj))
    assert [id(v) for v in found] == [id(t[0]), id(t[1]), id(t[2]), id(t[3])]


def test_get_elbo_compiles_with_its_options_and_keeps_pyros_apart():
    """jit=True wraps the named estimator, built with the other options, in CompiledELBO;
    ``ignore_jit_warnings`` goes to the wrapper (not to Pyro's ELBO, which has an option of
    that name for its own JIT ELBOs); jit='inductor' picks that backend."""
    from inference.jit import CompiledELBO

    elbo = get_elbo("trace", jit=True, num_particles=3, ignore_jit_warnings=True)
    assert isinstance(elbo, CompiledELBO) and type(elbo.estimator) is pyro.infer.Trace_ELBO
    assert elbo.estimator.num_particles == 3 and elbo.num_particles == 3
    assert elbo.ignore_jit_warnings is True and elbo.estimator.ignore_jit_warnings is False
    assert elbo.backend == "torchscript"
    assert get_elbo("trace", jit="torchscript").backend == "torchscript"  # by name too
    plain = get_elbo("stl", jit="inductor", base="enum")
    assert plain.ignore_jit_warnings is False and plain.backend == "inductor"
    assert isinstance(plain.estimator, StickingTheLanding) and plain.estimator.base_name == "enum"
    with pytest.raises(ValueError, match=r"jit must be True, False or one of 'torchscript', 'in"):
        get_elbo("trace", jit=1)


# ---- which sites STL changes: shared pieces ---------------------------------------------------

SITE_X = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)


def _gradients(elbo, model, guide, seed: int = 0) -> dict[str, torch.Tensor]:
    """Gradient of ``elbo``'s loss w.r.t. every param, at ``seed``, with fresh params."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    elbo.loss_and_grads(model, guide)
    store = pyro.get_param_store()
    grads = {name: store.get_param(name).unconstrained().grad.clone() for name in store.keys()}
    pyro.clear_param_store()
    return grads


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-12, atol=1e-12, msg=name)


# ---- how often the guide runs ---------------------------------------------------------------


def _counted_guide(structured: bool):
    """Two Normal sites; with ``structured`` the second's mean has 0.8 * the first draw added.
    That mean is ``0.8 * a + (half + half)``: the autograd walk takes the second operand first
    and meets ``half`` twice there, before the path to ``a`` (a walk that stopped at a node it
    had seen would miss ``a``)."""
    calls = []

    def guide():
        calls.append(1)
        loc = pyro.param("loc", torch.tensor([0.3, -0.4], dtype=torch.float64))
        scale = pyro.param(
            "scale", torch.tensor([0.9, 1.2], dtype=torch.float64), constraint=constraints.positive
        )
        a = pyro.sample("a", dist.Normal(loc[0], scale[0]))
        half = 0.5 * loc[1]
        pyro.sample("b", dist.Normal((0.8 * a if structured else 0.0) + (half + half), scale[1]))

    return guide, calls


def _two_site_model():
    a = pyro.sample("a", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.5))
    b = pyro.sample("b", dist.Normal(a, 0.7))
    pyro.sample("x", dist.Normal(b, 1.0).expand([3]).to_event(1), obs=SITE_X)


@pytest.mark.parametrize("structured, runs", [(False, 1), (True, 2)])
def test_the_guide_runs_again_only_when_a_site_hangs_on_an_earlier_draw(structured, runs):
    """The module's claim: a mean-field guide is run once per loss (its pass-1 distributions
    already are those at the held values); a guide whose second site's mean moves with the
    first draw is replayed once more, hidden from the ELBO. One run too many is wasted work on
    every step; one too few would leave the upstream draw's gradient in the score term."""
    guide, calls = _counted_guide(structured)
    pyro.clear_param_store()
    get_elbo("stl").differentiable_loss(_two_site_model, guide)
    assert len(calls) == runs


class _CountingSet(set):
    """A set that counts membership tests (how many autograd nodes a walk visits)."""

    visits = 0

    def __contains__(self, item) -> bool:
        self.visits += 1
        return super().__contains__(item)


def test_the_autograd_walk_visits_each_node_once():
    """x <- x + x twelve times after x <- leaf * 1: 14 distinct nodes (12 additions, the
    product, the leaf's accumulator), but 2**12 paths from the top to the leaf. The walk must
    test each node once (14 membership tests) and find no target; without its record of the
    nodes seen it would test 3 * 2**12 - 1 = 12,287."""
    leaf = torch.tensor(1.0, requires_grad=True)
    x = leaf * 1.0
    for _ in range(12):
        x = x + x
    elsewhere = _CountingSet({(torch.tensor(2.0, requires_grad=True) * 3.0).grad_fn})
    assert not _reaches([x], elsewhere)
    assert elsewhere.visits == 14
    assert not _reaches([x], set())  # no target: nothing to reach
    assert _reaches([x], {x.grad_fn.next_functions[0][0]})


# ---- point masses fed by discrete draws -----------------------------------------------------


def _point_mass_after(draw: str):
    """Model and guide: a discrete draw k (Bernoulli or Poisson, sampled by the score
    function, or Bernoulli enumerated in the guide), then w = loc * (1 + k) as a Delta."""

    def prior_k():
        if draw == "poisson":
            return dist.Poisson(torch.tensor(1.7, dtype=torch.float64))
        return dist.Bernoulli(torch.tensor(0.3, dtype=torch.float64))

    def model():
        pyro.sample("k", prior_k())
        w = pyro.sample("w", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        loc = w.unsqueeze(-1).expand(w.shape + SITE_X.shape)  # w has an enumeration dim if k does
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=SITE_X)

    def guide():
        logit = pyro.param("logit", torch.tensor(0.4, dtype=torch.float64))
        loc = pyro.param("loc", torch.tensor(0.6, dtype=torch.float64))
        if draw == "poisson":
            k = pyro.sample("k", dist.Poisson(logit.exp()))
        else:
            infer = {"enumerate": "parallel"} if draw == "enumerated" else {}
            k = pyro.sample("k", dist.Bernoulli(logits=logit), infer=infer)
        pyro.sample("w", dist.Delta(loc * (1.0 + k)))

    return model, guide


@pytest.mark.parametrize("draw", ["bernoulli", "poisson", "enumerated"])
def test_a_delta_fed_by_a_discrete_draw_is_a_point_mass_and_gets_the_base_gradient(draw):
    """Given k, w is a point mass: no score term to drop, so STL's gradient is exactly the
    base estimator's (Trace_ELBO; TraceEnum_ELBO when k is enumerated). Counting k as a
    continuous draw would refuse this guide as a pushforward z = g_phi(eps)."""
    model, guide = _point_mass_after(draw)
    kw = {"max_plate_nesting": 0}
    base = "enum" if draw == "enumerated" else "trace"
    stl = get_elbo("stl", base=base, **kw)
    _assert_same(_gradients(stl, model, guide), _gradients(get_elbo(base, **kw), model, guide))


def test_a_chain_of_point_masses_gets_the_trace_elbo_gradient():
    """w1 = Delta(loc1), w2 = Delta(loc2 * w1): w2 moves with an earlier *Delta*, which is no
    random draw, so the chain is a point mass (no score term), not refused as a pushforward,
    and STL's gradient is Trace_ELBO's exactly."""

    def model():
        w1 = pyro.sample("w1", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        w2 = pyro.sample("w2", dist.Normal(0.5 * w1, 1.0))
        pyro.sample("x", dist.Normal(w2, 1.0).expand([3]).to_event(1), obs=SITE_X)

    def guide():
        loc = pyro.param("loc", torch.tensor([0.6, 1.4], dtype=torch.float64))
        w1 = pyro.sample("w1", dist.Delta(loc[0]))
        pyro.sample("w2", dist.Delta(loc[1] * w1))

    stl, trace = get_elbo("stl"), get_elbo("trace")
    _assert_same(_gradients(stl, model, guide), _gradients(trace, model, guide))


class _Unclassified(dist.TorchDistribution):
    """A continuous noise distribution whose support Pyro cannot classify (none is declared)."""

    arg_constraints = {}
    has_rsample = True

    def __init__(self):
        super().__init__(torch.Size(), torch.Size(), validate_args=False)

    def rsample(self, sample_shape=()):
        return torch.randn(sample_shape, dtype=torch.float64)

    def log_prob(self, value):
        return dist.Normal(0.0, 1.0).log_prob(value)


def _pushforward(noise: dist.TorchDistribution):
    """Model z ~ N(0, 1); guide eps ~ ``noise``, z = Delta(loc + 2 eps): a pushforward."""

    def model():
        pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.3, dtype=torch.float64))
        eps = pyro.sample("eps", noise, infer={"is_auxiliary": True})
        pyro.sample("z", dist.Delta(loc + 2.0 * eps))

    pyro.clear_param_store()
    return model, guide


def test_a_delta_fed_by_a_draw_of_unknown_support_is_refused():
    """The safe side: an unknown support counts as continuous, so loc + 2 eps is refused as a
    pushforward (a loud error) instead of passing with a biased gradient."""
    model, guide = _pushforward(_Unclassified())
    with pytest.raises(ValueError, match="cannot support guide function at site 'z'"):
        get_elbo("stl").differentiable_loss(model, guide)


def test_the_pushforward_refusal_says_why_and_what_to_use_instead():
    """The whole first line, word for word: the guide and site, the reason, and the guides to
    use instead (a user reads it to choose one)."""
    model, guide = _pushforward(dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    with pytest.raises(ValueError) as refused:
        get_elbo("stl").differentiable_loss(model, guide)
    message = str(refused.value).split("\n")[0]  # Pyro appends the trace's shapes below
    assert message == (
        "estimator 'stl' cannot support guide function at site 'z': the guide emits it as a "
        "Delta whose value is a parameter-dependent function of an earlier random draw "
        "(z = loc + scale * eps), so its program never evaluates q at a fixed z and the path "
        "derivative cannot be separated from the score term. Use 'trace', or a guide that "
        "samples the latent from a parametric distribution (AutoNormal, AutoMultivariateNormal, "
        "AutoLowRankMultivariateNormal, AutoIAFNormal, AutoNormalMessenger, ...)"
    )


# ---- enumerated sites that could be reparameterised -----------------------------------------


def test_an_enumerated_straight_through_site_is_left_to_enumeration():
    """OneHotCategoricalStraightThrough has an rsample, but enumerated in the guide its values
    are summed over: STL must leave the site alone, and its gradient is TraceEnum_ELBO's."""
    locs = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)

    def model():
        probs = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
        z = pyro.sample("z", dist.OneHotCategorical(probs))
        pyro.sample("x", dist.Normal((z * locs).sum(-1, keepdim=True), 1.0).to_event(1), obs=SITE_X)

    def guide():
        logits = pyro.param("logits", torch.tensor([0.1, -0.3, 0.4], dtype=torch.float64))
        straight_through = dist.OneHotCategoricalStraightThrough(logits=logits)
        pyro.sample("z", straight_through, infer={"enumerate": "parallel"})

    kw = {"max_plate_nesting": 0}
    stl = get_elbo("stl", base="enum", **kw)
    _assert_same(_gradients(stl, model, guide), _gradients(get_elbo("enum", **kw), model, guide))
