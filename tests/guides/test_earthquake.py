"""The mean-field guide: built from a MeanField, read back as the same MeanField."""

from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch

from analytic.earthquake import Hyperparameters, MeanField
from guides.earthquake import EarthquakeGuide, GlobalsGuide
from ppl_models.earthquake import simulate


def _q(N=6, K=3):
    g = torch.Generator().manual_seed(0)
    return MeanField(
        probs=torch.softmax(torch.randn(N, K, generator=g), -1),
        loc=torch.randn(K, 2, generator=g),
        precision=torch.rand(K, generator=g) + 0.5,
        concentration=torch.rand(K, generator=g) + 1,
        rate=torch.rand(K, generator=g) + 0.2,
    )


@pytest.mark.parametrize("loc_scale, logit_scale", [(1.0, 1.0), (7.0, 10.0)])
def test_guide_round_trips_a_mean_field(loc_scale, logit_scale):
    q = _q()
    back = EarthquakeGuide(q, loc_scale=loc_scale, logit_scale=logit_scale).mean_field()
    for a, b in zip(q, back):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_guide_samples_have_the_model_shapes():
    hp = Hyperparameters(3)
    X, S, *_ = simulate(hp, 6, seed=0)
    trace = poutine.trace(EarthquakeGuide(_q(), enumerate=False)).get_trace(X, S, hp)
    assert trace.nodes["mu"]["value"].shape == (3, 2)
    assert trace.nodes["lam"]["value"].shape == (3,)
    assert trace.nodes["z"]["value"].shape == (6,)


def test_guide_rejects_data_of_another_size():
    hp = Hyperparameters(3)
    X, S, *_ = simulate(hp, 7, seed=0)
    with pytest.raises(ValueError, match="7 events"):
        EarthquakeGuide(_q())(X, S, hp)
    with pytest.raises(ValueError, match="loc_scale"):
        EarthquakeGuide(_q(), loc_scale=0.0)


def test_globals_guide_round_trips_and_refuses_bad_starts():
    q = _q()
    back = GlobalsGuide(q._replace(probs=None), loc_scale=3.0).mean_field()
    assert back.probs is None
    for name in ("loc", "precision", "concentration", "rate"):
        assert torch.allclose(getattr(back, name), getattr(q, name), rtol=1e-12), name
    with pytest.raises(ValueError, match="init must be a MeanField, got tuple"):
        GlobalsGuide(tuple(q))
    with pytest.raises(ValueError, match="loc_scale must be > 0, got 0.0"):
        GlobalsGuide(q, loc_scale=0.0)
    with pytest.raises(ValueError, match="precision"):
        GlobalsGuide(q._replace(precision=-q.precision))


@pytest.mark.parametrize("cls", [EarthquakeGuide, GlobalsGuide])
def test_permuting_a_guide_relabels_every_parameter_and_refuses_a_non_permutation(cls):
    """New cluster k is old perm[k]: the guide's mean field afterwards is the old one's
    clusters (and the assignment columns) taken in the order perm."""
    q = _q()
    guide = cls(q) if cls is EarthquakeGuide else cls(q._replace(probs=None))
    before = guide.mean_field()
    perm = [2, 0, 1]
    guide.permute_clusters_(perm)
    after = guide.mean_field()
    for name in ("loc", "precision", "concentration", "rate"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name)[perm])
    if cls is EarthquakeGuide:
        torch.testing.assert_close(after.probs, before.probs[:, perm])
    with pytest.raises(ValueError, match=r"perm must be a permutation of 0..2, got \[0, 0, 1\]"):
        guide.permute_clusters_([0, 0, 1])
