"""The ring mixture's EM step and argument checks at their edges: a component with a fraction of
a point, one with none (its mean kept), the defaults of ``em``, and the boundaries of the
counts and weights accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analytic import ring


def test_em_step_against_the_formulas_with_a_light_and_an_empty_component():
    # three points; component 1 sits 2.5 away (a fraction of a point: 0 < N_1 < 1), component
    # 2 sits 100 away (r = exp(-5000) = 0 exactly: N_2 = 0, so its mean is kept)
    X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    means = torch.tensor([[0.3, 0.3], [2.5, 0.0], [100.0, 0.0]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    new_means, new_weights, log_lik = ring.em_step(X, means, weights)
    x, m, w = X.numpy(), means.numpy(), weights.numpy()
    log_joint = np.log(w) - np.log(2 * np.pi) - 0.5 * ((x[:, None] - m[None]) ** 2).sum(-1)
    r = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True))
    counts = r.sum(0)
    assert 0 < counts[1] < 1 and counts[2] == 0
    np.testing.assert_allclose(new_means[:2].numpy(), (r.T @ x)[:2] / counts[:2, None],
                               rtol=1e-12)  # fmt: skip
    assert new_means[2].tolist() == [100.0, 0.0]
    np.testing.assert_allclose(new_weights.numpy(), counts / 3, rtol=1e-12)
    assert float(log_lik) == pytest.approx(np.logaddexp.reduce(log_joint, axis=1).sum(), 1e-12)


def test_em_defaults_are_the_documented_ones():
    X, _ = ring.sample(300, ring.ring_means(4, 3.0), seed=1)
    default = ring.em(X, 4)
    explicit = ring.em(X, 4, num_init=10, max_iter=500, tol=1e-10, seed=0)
    assert float(default.log_likelihood) == float(explicit.log_likelihood)
    assert torch.equal(default.means, explicit.means)


def test_counts_accept_their_lower_bound_and_refuse_bools():
    means = ring.ring_means(3, 4.0)
    assert ring.sample(1, means)[0].shape == (1, 2)
    for value in (True, 0):
        with pytest.raises(ValueError) as err:
            ring.sample(value, means)
        assert str(err.value) == f"num_samples must be an integer >= 1, got {value!r}"


def test_weights_may_hold_zeros_but_not_negatives():
    means = ring.ring_means(3, 4.0)
    X, z = ring.sample(50, means, [0.0, 0.5, 0.5], seed=2)
    assert not bool((z == 0).any())
    with pytest.raises(ValueError, match=r"^weights must be >= 0 and sum to 1"):
        ring.sample(5, means, [-0.5, 0.75, 0.75])
