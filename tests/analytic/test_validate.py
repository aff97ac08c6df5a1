"""The shared argument checks: each refusal names the argument, what is allowed and the value, and
the boundaries fall where the docstrings put them. Called inside the tests (not at import), so
that mutation testing sees which tests reach them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analytic import ring
from analytic._validate import nonnegative, number, positive


@pytest.mark.parametrize("value", [2, 2.5, np.float32(2.5), torch.tensor(2.5, dtype=torch.float64)])
def test_number_accepts_numbers_and_zero_dim_tensors(value):
    assert number("w", value, "a number") == float(value)


@pytest.mark.parametrize("value", ["2", b"2", True, None, [2.0], torch.ones(2)])
def test_number_refuses_the_rest_with_one_message(value):
    with pytest.raises(ValueError) as err:
        number("width", value, "a number > 3")
    assert str(err.value) == f"width must be a number > 3, got {value!r}"


def test_positive_boundaries_and_messages():
    assert positive("tau", 1e-300) == 1e-300 and positive("tau", torch.tensor(3.0)) == 3.0
    for value in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError) as err:
            positive("tau", value)
        assert str(err.value) == f"tau must be a finite number > 0, got {value!r}"
    with pytest.raises(ValueError) as err:
        positive("tau", "1")
    assert str(err.value) == "tau must be a finite number > 0, got '1'"


def test_nonnegative_boundaries_and_messages():
    assert nonnegative("tau0", 0.0) == 0.0 and nonnegative("tau0", 2) == 2.0
    for value in (-1e-300, math.inf, math.nan):
        with pytest.raises(ValueError) as err:
            nonnegative("tau0", value)
        assert str(err.value) == f"tau0 must be a finite number >= 0, got {value!r}"
    with pytest.raises(ValueError) as err:
        nonnegative("tau0", True)
    assert str(err.value) == "tau0 must be a finite number >= 0, got True"


def test_ring_seed_bounds():
    means = ring.ring_means(3, 4.0)
    assert ring.sample(2, means, seed=2**63 - 1)[0].shape == (2, 2)
    for seed in (2**63, -1, True, 1.0):
        with pytest.raises(ValueError) as err:
            ring.sample(2, means, seed=seed)
        assert str(err.value) == f"seed must be an integer in [0, 2**63), got {seed!r}"
