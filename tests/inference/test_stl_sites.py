"""Which guide sites the path-derivative estimator changes, which draws it holds, and when it
runs the guide a second time (:mod:`inference.stl`).

The gradient checks here are exact equalities at a fixed seed: where STL leaves every site as
it is (a point mass has no score term; an enumerated site is summed over, not drawn), its
gradient *is* the base estimator's, bit for bit, so the tolerance is float64 rounding (1e-12).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from inference.estimators import get_elbo
from inference.stl import _reaches

X = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)


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
    """Two Normal sites; with ``structured`` the second's mean is 0.8 * the first draw."""
    calls = []

    def guide():
        calls.append(1)
        loc = pyro.param("loc", torch.tensor([0.3, -0.4], dtype=torch.float64))
        scale = pyro.param(
            "scale", torch.tensor([0.9, 1.2], dtype=torch.float64), constraint=constraints.positive
        )
        a = pyro.sample("a", dist.Normal(loc[0], scale[0]))
        shift = 0.8 * a if structured else 0.0
        pyro.sample("b", dist.Normal(loc[1] + shift, scale[1]))

    return guide, calls


def _two_site_model():
    a = pyro.sample("a", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.5))
    b = pyro.sample("b", dist.Normal(a, 0.7))
    pyro.sample("x", dist.Normal(b, 1.0).expand([3]).to_event(1), obs=X)


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
        loc = w.unsqueeze(-1).expand(w.shape + X.shape)  # w has an enumeration dim if k does
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=X)

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


def test_a_delta_fed_by_a_draw_of_unknown_support_is_refused():
    """The safe side: an unknown support counts as continuous, so loc + 2 eps is refused as a
    pushforward (a loud error) instead of passing with a biased gradient."""

    def model():
        pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.3, dtype=torch.float64))
        eps = pyro.sample("eps", _Unclassified(), infer={"is_auxiliary": True})
        pyro.sample("z", dist.Delta(loc + 2.0 * eps))

    pyro.clear_param_store()
    with pytest.raises(ValueError, match="cannot support guide function at site 'z'"):
        get_elbo("stl").differentiable_loss(model, guide)


# ---- enumerated sites that could be reparameterised -----------------------------------------


def test_an_enumerated_straight_through_site_is_left_to_enumeration():
    """OneHotCategoricalStraightThrough has an rsample, but enumerated in the guide its values
    are summed over: STL must leave the site alone, and its gradient is TraceEnum_ELBO's."""
    locs = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)

    def model():
        probs = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
        z = pyro.sample("z", dist.OneHotCategorical(probs))
        pyro.sample("x", dist.Normal((z * locs).sum(-1, keepdim=True), 1.0).to_event(1), obs=X)

    def guide():
        logits = pyro.param("logits", torch.tensor([0.1, -0.3, 0.4], dtype=torch.float64))
        straight_through = dist.OneHotCategoricalStraightThrough(logits=logits)
        pyro.sample("z", straight_through, infer={"enumerate": "parallel"})

    kw = {"max_plate_nesting": 0}
    stl = get_elbo("stl", base="enum", **kw)
    _assert_same(_gradients(stl, model, guide), _gradients(get_elbo("enum", **kw), model, guide))
