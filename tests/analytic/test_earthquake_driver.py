"""The in-memory CAVI driver's bookkeeping, and k-means++ seeding on data that trip it up:
a run stopped by ``max_iter`` (not converged) reports exactly its sweeps, its last ELBO and
``converged=False``; k-means++ never picks a point twice while distinct points remain, however
close they are."""

from __future__ import annotations

import pytest
import torch

from analytic.earthquake import Hyperparameters, cavi, elbo, kmeans_plus_plus
from ppl_models.earthquake import simulate

HP = Hyperparameters(3, tau=0.02, rho=1e-3, alpha=1.5, beta=0.2)


def test_a_run_cut_short_reports_its_sweeps_and_its_last_elbo():
    X, S, *_ = simulate(HP, 300, seed=3)
    r = cavi(X, S, HP, max_iter=3, tol=0.0, num_init=1, seed=1)
    assert r.num_iter == 3 and r.elbo_history.shape == (4,) and r.converged is False
    assert float(r.elbo) == float(r.elbo_history[-1])
    # the ELBO reported is that of the q returned (not of the sweep before: they differ)
    assert abs(float(elbo(X, S, HP, r.q) - r.elbo)) < 1e-10 * abs(float(r.elbo))
    assert float(r.elbo_history[-1] - r.elbo_history[-2]) > 1e-6 * abs(float(r.elbo))


def test_a_run_that_converges_says_so():
    X, S, *_ = simulate(HP, 300, seed=3)
    r = cavi(X, S, HP, max_iter=500, tol=1e-8, num_init=1, seed=1)
    assert r.converged is True and r.num_iter < 500
    assert r.num_iter == r.elbo_history.shape[0] - 1


@pytest.mark.parametrize("seed", range(10))
def test_kmeans_plus_plus_takes_distinct_points_however_close(seed):
    # three distinct points 0.01 apart, ten copies each: the squared distances sum to ~1e-3,
    # and a point at distance 0 from a chosen centre must never be drawn again
    points = torch.tensor([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01]], dtype=torch.float64)
    X = points.repeat_interleave(10, dim=0)
    centres = kmeans_plus_plus(X, 3, torch.Generator().manual_seed(seed))
    assert len({tuple(c.tolist()) for c in centres}) == 3


@pytest.mark.parametrize("seed", range(10))
def test_kmeans_plus_plus_finds_three_tight_clusters(seed):
    # clusters of sd 0.01 around (5, 5), (6, 5), (5, 6): after a first centre the next is
    # drawn by squared distance, so from another cluster with probability > 1 - 1e-3
    g = torch.Generator().manual_seed(100 + seed)
    means = torch.tensor([[5.0, 5.0], [6.0, 5.0], [5.0, 6.0]], dtype=torch.float64)
    X = (means.repeat_interleave(20, dim=0)
         + 0.01 * torch.randn(60, 2, generator=g, dtype=torch.float64))  # fmt: skip
    centres = kmeans_plus_plus(X, 3, torch.Generator().manual_seed(seed))
    nearest = torch.cdist(centres, means).argmin(-1)
    assert sorted(nearest.tolist()) == [0, 1, 2]
