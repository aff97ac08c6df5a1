"""The ring mixture in Pyro: enumeration gives -log p(x) exactly; AutoDelta's maximum
likelihood by gradient lands where EM lands from the same start."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, init_to_value

from analytic import ring
from ppl_models.ring import MAX_PLATE_NESTING, ml_model, model


def _empty_guide(*args, **kwargs):
    pass


@pytest.mark.parametrize("radius, uniform", [(10.0, True), (1.0, False)])
def test_trace_enum_elbo_with_an_empty_guide_is_minus_log_p(radius, uniform):
    means = ring.ring_means(10, radius)
    weights = None if uniform else torch.linspace(1, 2, 10, dtype=torch.float64) / 15
    X, _ = ring.sample(300, means, weights, seed=2)
    loss = TraceEnum_ELBO(max_plate_nesting=MAX_PLATE_NESTING).loss(model, _empty_guide, X, means,
                                                                    weights)  # fmt: skip
    assert loss == pytest.approx(-ring.log_density(X, means, weights).sum().item(), rel=1e-13)


@pytest.mark.slow  # 22 s; the closed-form mixture likelihood is checked above in the default run
def test_autodelta_maximum_likelihood_lands_on_em():
    """From one k-means++ start, EM and SVI (AutoDelta on flat priors, enumeration, Adam with a
    decaying rate) end at the same local maximum: means within 0.01 and weights within 1e-3
    (SVI's last Adam steps are ~1e-3 of the unconstrained parameters), log-likelihoods within
    1e-3 nats. The start is shared because the likelihood has many local maxima (on 500 points
    of the K = 10, R = 10 ring, SVI from another start ended 29 nats below EM's best)."""
    X, _ = ring.sample(400, ring.ring_means(6, 4.0), seed=3)
    start = ring.kmeans_plus_plus(X, 6, torch.Generator().manual_seed(0))
    uniform = torch.full((6,), 1 / 6, dtype=torch.float64)
    em = ring.em(X, 6, init=(start, uniform), tol=0.0, max_iter=5000)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    init = init_to_value(values={"means": start, "weights": uniform})
    guide = AutoDelta(poutine.block(ml_model, hide=["z"]), init_loc_fn=init)
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.999})
    svi = SVI(ml_model, guide, optim, TraceEnum_ELBO(max_plate_nesting=MAX_PLATE_NESTING))
    for _ in range(3000):
        svi.step(X, 6)
    fitted = guide.median(X, 6)
    torch.testing.assert_close(fitted["means"], em.means, atol=0.01, rtol=0)
    torch.testing.assert_close(fitted["weights"], em.weights, atol=1e-3, rtol=0)
    value = ring.log_density(X, fitted["means"].detach(), fitted["weights"].detach()).sum()
    assert abs(value - em.log_likelihood).item() < 1e-3
