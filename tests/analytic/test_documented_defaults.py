"""The defaults the signatures state, observed through behaviour (a changed default changes
every call that leaves it out: another budget, tolerance, number of restarts or seed)."""

from __future__ import annotations

import pytest
import torch

from analytic import earthquake, ring
from analytic.earthquake import Hyperparameters, seeding, streamed
from ppl_models.earthquake import simulate

HP = Hyperparameters(3, mixing=(0.2, 0.5, 0.3), tau=0.5, rho=0.02, alpha=2.5, beta=0.4)
X, S, *_ = simulate(HP, 120, seed=4)


def _in_memory(**kw):
    return earthquake.cavi(X, S, HP, **kw)


def _streamed(**kw):
    return streamed.streamed_cavi(lambda: [(X, S)], HP, sample=(X, S), **kw)


@pytest.mark.parametrize("run", [_in_memory, _streamed], ids=["cavi", "streamed_cavi"])
def test_cavi_defaults_are_tol_1e_8_five_starts_seed_0(run, monkeypatch):
    """Left out, tol = 1e-8 and seed = 0 give the same result as given explicitly (seed 1
    would not), and num_init = 5: five k-means++ starts are drawn. (max_iter = 500 is not
    observable here: these runs converge in a few sweeps, even with tol = 0.)"""
    default, explicit = run(max_iter=3), run(max_iter=3, tol=1e-8, num_init=5, seed=0)
    assert torch.equal(default.elbo_history, explicit.elbo_history)
    assert not torch.equal(run(max_iter=1, seed=1).q.loc, run(max_iter=1, seed=0).q.loc)
    starts = []
    real = seeding.kmeans_plus_plus
    monkeypatch.setattr(seeding, "kmeans_plus_plus", lambda *a: starts.append(1) or real(*a))
    run(max_iter=1)
    assert len(starts) == 5


def test_em_defaults_are_tol_1e_10_ten_starts_seed_0(monkeypatch):
    """ring.em: tol = 1e-10 and seed = 0 as given explicitly, num_init = 10 starts."""
    Xr = ring.sample(80, ring.ring_means(3, 3.0), seed=2)[0]
    default = ring.em(Xr, 3, max_iter=4)
    explicit = ring.em(Xr, 3, max_iter=4, tol=1e-10, num_init=10, seed=0)
    assert torch.equal(default.history, explicit.history)
    starts = []
    seeding = ring.kmeans_plus_plus
    monkeypatch.setattr(ring, "kmeans_plus_plus", lambda *a: starts.append(1) or seeding(*a))
    ring.em(Xr, 3, max_iter=1)
    assert len(starts) == 10
