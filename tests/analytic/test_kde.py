"""Kernel density estimation against scikit-learn and scipy; bandwidth selection; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from sklearn.neighbors import KernelDensity

from analytic import kde, ring


def _data(n, d=2, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 1.7 + offset


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("h", [0.13, 0.7, 3.1])
def test_kde_equals_the_direct_sum_and_scikit_learn(d, h):
    """Against the direct sum (scipy's logsumexp over all N x M distances) to 1e-12 at every
    query, including far tails; against sklearn's tree evaluation (rtol = atol = 0) to 1e-10
    relative where log p > -15 (measured at most 2e-11 there). sklearn's trees are not exact
    further out: 2.6e-5 relative at log p ~ -30 and 29 nats off at log p = -89 (3-D, h = 0.13)
    while the direct sum agrees with ours to 7e-15, so the tails are checked against the
    direct sum only."""
    train, query = _data(300, d, seed=1), _data(57, d, seed=2) * 1.5
    sq = (query[:, None, :] - train[None]).square().sum(-1).numpy()
    direct = (scipy.special.logsumexp(-sq / (2 * h * h), axis=1) - math.log(300)
              - 0.5 * d * math.log(2 * math.pi * h * h))  # fmt: skip
    ours = kde.kde_log_density(train, query, h).numpy()
    np.testing.assert_allclose(ours, direct, rtol=0, atol=1e-12)
    bulk = direct > -15
    assert bulk.sum() >= 20
    expected = KernelDensity(bandwidth=h).fit(train.numpy()).score_samples(query.numpy())
    np.testing.assert_allclose(ours[bulk], expected[bulk], rtol=1e-10, atol=0)


def _direct(train, query, h):
    """log (1/N) sum_i N(y | x_i, h^2 I), from the whole N x M distance matrix at once."""
    sq = torch.cdist(query, train).square()
    d = train.shape[1]
    return (torch.logsumexp(-0.5 * sq / h**2, dim=1) - math.log(train.shape[0])
            - 0.5 * d * math.log(2 * math.pi * h**2))  # fmt: skip


def test_chunking_does_not_change_the_result():
    """Chunks of 1, 7 and 100 distances (queries one at a time, in blocks of 2, training
    points split) against the direct sum, each computed before anything else of its size
    (the result is filled block by block into a fresh buffer: a block left out would show)."""
    train = _data(50, seed=3)
    for chunk in (1, 7, 100):
        query = _data(20, seed=40 + chunk)  # new numbers each time: no stale buffer can match
        got = kde.kde_log_density(train, query, 0.4, chunk=chunk)
        torch.testing.assert_close(got, _direct(train, query, 0.4), rtol=0, atol=1e-12)


def test_float64_data_keep_float64_under_a_float32_default(float32_default):
    """The accumulator takes the data's dtype, not torch's default: float64 data scored
    under a float32 default agree with the direct sum to 1e-12 (float32 would be off ~1e-7)."""
    train, query = _data(50, seed=3), _data(20, seed=5)
    got = kde.kde_log_density(train, query, 0.4, chunk=100)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, _direct(train, query, 0.4), rtol=1e-12, atol=0)


def test_far_from_the_origin_the_estimate_is_translation_invariant():
    """Shifted by 1e6, |y|^2 + |x|^2 - 2 y.x would lose every digit of a distance ~1 (1e12 x
    1e-16 = 1e-4 absolute); coordinate differences keep it to 1e-9 (1e6 x 1e-16 per
    coordinate, squared and divided by 2 h^2)."""
    train, query = _data(40, seed=5), _data(10, seed=6)
    here = kde.kde_log_density(train, query, 0.1)
    far = kde.kde_log_density(train + 1e6, query + 1e6, 0.1)
    np.testing.assert_allclose(far.numpy(), here.numpy(), rtol=0, atol=1e-6)


def test_one_kernel_is_a_gaussian_density():
    """N = 1: log N(y; x, h^2 I) by torch.distributions (every constant: log N, d/2 log 2pi h^2)."""
    x, y = torch.tensor([[0.3, -1.2, 2.0]]), _data(5, d=3, seed=7)
    expected = torch.distributions.Normal(x, 0.8).log_prob(y).sum(-1)
    torch.testing.assert_close(kde.kde_log_density(x, y, 0.8), expected, rtol=1e-13, atol=0)
    # N = 4 copies of the same point: the same density (the 1/N is there)
    torch.testing.assert_close(kde.kde_log_density(x.repeat(4, 1), y, 0.8), expected,
                               rtol=1e-13, atol=0)  # fmt: skip


def test_bandwidth_selection_picks_the_best_validation_score():
    train, val = _data(200, seed=8), _data(100, seed=9)
    grid = torch.tensor([0.05, 0.3, 0.6, 1.2, 4.0])
    sel = kde.select_bandwidth(train, val, grid)
    scores = torch.stack([kde.kde_log_density(train, val, h).mean() for h in grid.tolist()])
    torch.testing.assert_close(sel.scores, scores, rtol=0, atol=0)
    assert sel.index == int(scores.argmax()) and sel.bandwidth == grid[sel.index].item()
    assert 0 < sel.index < len(grid) - 1  # an interior optimum: too narrow and too wide lose


def test_on_the_ring_the_default_grid_picks_the_sources_0_616():
    """The source: 20 bandwidths from 0.1 to 5, optimum about 0.616 (R = 10, 2,000 training
    and 1,000 validation points)."""
    means = ring.ring_means(10, 10.0)
    X, _ = ring.sample(2000, means, seed=0)
    V, _ = ring.sample(1000, means, seed=1)
    sel = kde.select_bandwidth(X, V)
    torch.testing.assert_close(sel.grid, torch.linspace(0.1, 5, 20, dtype=torch.float64))
    assert sel.bandwidth == pytest.approx(0.1 + 2 * 4.9 / 19, rel=1e-12)  # 0.6158


@pytest.mark.parametrize("d", [1, 2, 3])
def test_rules_of_thumb_equal_scipys_factors_times_the_spread(d):
    """scipy's gaussian_kde factors (Scott n^(-1/(d+4)); Silverman (n(d+2)/4)^(-1/(d+4))) times
    the root mean per-coordinate variance; in 2-D the two rules coincide."""
    X = _data(150, d, seed=10) * torch.linspace(0.5, 2.0, d)
    sigma = X.var(0).mean().sqrt().item()
    k = scipy.stats.gaussian_kde(X.numpy().T)
    assert kde.scott_bandwidth(X) == pytest.approx(k.scotts_factor() * sigma, rel=1e-13)
    assert kde.silverman_bandwidth(X) == pytest.approx(k.silverman_factor() * sigma, rel=1e-13)
    if d == 2:
        assert kde.scott_bandwidth(X) == pytest.approx(kde.silverman_bandwidth(X), rel=1e-14)
    else:
        assert kde.scott_bandwidth(X) != pytest.approx(kde.silverman_bandwidth(X), rel=1e-3)


TRAIN = _data(10, seed=11)
BAD = [
    (
        lambda: kde.kde_log_density(TRAIN, TRAIN, 0.0),
        "^bandwidth must be a finite number > 0, got 0.0$",
    ),
    (
        lambda: kde.kde_log_density(TRAIN, TRAIN, -1),
        "^bandwidth must be a finite number > 0, got -1$",
    ),
    (lambda: kde.kde_log_density(TRAIN, TRAIN, math.nan), "^bandwidth must be .*got nan$"),
    (lambda: kde.kde_log_density(TRAIN, TRAIN, "wide"), "^bandwidth must be .*got 'wide'$"),
    (
        lambda: kde.kde_log_density(TRAIN[:0], TRAIN, 1.0),
        r"^train must have shape \(N, d\) with N, d >= 1, got \(0, 2\)$",
    ),
    (lambda: kde.kde_log_density(TRAIN, TRAIN[:0], 1.0), r"^query must have shape .*got \(0, 2\)$"),
    (
        lambda: kde.kde_log_density(TRAIN, TRAIN[:, :1], 1.0),
        "^query has 1 coordinates but train has 2$",
    ),
    (
        lambda: kde.kde_log_density(TRAIN * math.nan, TRAIN, 1.0),
        r"^train must be finite, got nan at \[0, 0\]$",
    ),
    (
        lambda: kde.kde_log_density(TRAIN.numpy(), TRAIN, 1.0),
        "^train must be a torch tensor of shape .*got ndarray$",
    ),
    (
        lambda: kde.kde_log_density(TRAIN, TRAIN, 1.0, chunk=0),
        "^chunk must be an integer >= 1, got 0$",
    ),
    (
        lambda: kde.select_bandwidth(TRAIN, TRAIN, []),
        "^grid must hold at least one bandwidth, got none$",
    ),
    (lambda: kde.select_bandwidth(TRAIN, TRAIN, [0.5, -0.1]), "^bandwidth must be .*got -0.1$"),
    (
        lambda: kde.select_bandwidth(TRAIN, TRAIN[:0]),
        r"^validation must have shape .*got \(0, 2\)$",
    ),
    (lambda: kde.scott_bandwidth(TRAIN[:1]), "^X needs at least 2 points for a spread, got 1$"),
    (lambda: kde.silverman_bandwidth(TRAIN[:, None]), r"^X must have shape .*got \(10, 1, 2\)$"),
]


@pytest.mark.parametrize("call, pattern", BAD)
def test_bad_input_gets_one_clear_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_integer_points_are_converted_and_two_points_have_a_spread():
    """Integer tensors are converted to the default dtype (torch.var refuses integers), and
    N = 2 is the fewest points with an (unbiased) spread: sigma^2 = mean of the two
    coordinates' variances = (0.5 + 2) / 2 here."""
    X = torch.tensor([[0, 1], [1, 3]])
    assert kde.scott_bandwidth(X) == pytest.approx(math.sqrt(1.25) * 2 ** (-1 / 6), rel=1e-14)
    torch.testing.assert_close(
        kde.kde_log_density(X, X.double(), 0.7), kde.kde_log_density(X.double(), X.double(), 0.7)
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: kde.kde_log_density(
                torch.tensor([[1.0, 2.0], [math.nan, 3.0]]), torch.zeros(1, 2), 1.0
            ),
            "train must be finite, got nan at [1, 0]",
        ),
        (
            lambda: kde.kde_log_density(torch.zeros(3, 2), torch.zeros(1, 2), 1.0, chunk=True),
            "chunk must be an integer >= 1, got True",
        ),
        (
            lambda: kde.kde_log_density(torch.zeros(3, 2), torch.zeros(1, 2), 1.0, chunk=2.5),
            "chunk must be an integer >= 1, got 2.5",
        ),
        (
            lambda: kde.select_bandwidth(torch.zeros(3), torch.zeros(1, 1)),
            "train must have shape (N, d) with N, d >= 1, got (3,)",
        ),
        (
            lambda: kde.scott_bandwidth(torch.zeros(1, 2)),
            "X needs at least 2 points for a spread, got 1",
        ),
    ],
)
def test_every_refusal_is_exact(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_float32_points_give_a_float32_density():
    """The density is computed in the promoted dtype of train and query, not the default."""
    X = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)).float()
    got = kde.kde_log_density(X, X[:7], 0.4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), kde.kde_log_density(X.double(), X[:7].double(), 0.4),
                               rtol=1e-6, atol=0)  # fmt: skip


def test_the_bandwidth_grid_is_float64_under_a_float32_default(float32_default):
    """select_bandwidth's default grid and its scores are float64 whatever the default dtype:
    in float32 the grid value 0.1 + 4.9 * 3 / 19 is not the bandwidth the user reads."""
    X = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    result = kde.select_bandwidth(X[:30], X[30:])
    assert result.grid.dtype == torch.float64 and result.scores.dtype == torch.float64
    assert torch.equal(result.grid, torch.linspace(0.1, 5.0, 20, dtype=torch.float64))
    given = kde.select_bandwidth(X[:30], X[30:], grid=[0.3, 0.7])
    assert given.grid.dtype == torch.float64 and given.grid[0].item() == 0.3
