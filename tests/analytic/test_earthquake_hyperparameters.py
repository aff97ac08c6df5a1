"""``Hyperparameters`` normalises what it is given (lists, arrays, tensors -> tuples of floats)
and refuses the rest in one sentence naming the field and the value as given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analytic.earthquake import Hyperparameters


@pytest.mark.parametrize(
    "nu", [[1, -2], (1.0, -2.0), np.array([1.0, -2.0]), torch.tensor([1.0, -2.0])]
)
def test_nu_becomes_a_tuple_of_floats(nu):
    hp = Hyperparameters(2, nu=nu, mixing=torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert hp.nu == (1.0, -2.0) and type(hp.nu) is tuple
    assert all(type(v) is float for v in hp.nu)
    assert hp.mixing == (0.25, 0.75) and type(hp.mixing) is tuple


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nu": "12"}, "nu must be 2 finite numbers, got '12'"),
        ({"nu": True}, "nu must be 2 finite numbers, got True"),
        ({"nu": (1.0, "a")}, "nu must be 2 finite numbers, got 'a'"),
        ({"nu": (1.0, 2.0, 3.0)}, "nu must be 2 finite numbers, got (1.0, 2.0, 3.0)"),
        ({"mixing": "ab"}, "mixing must be 2 positive numbers summing to 1, got 'ab'"),
        ({"mixing": (0.5, None)}, "mixing must be 2 positive numbers summing to 1, got None"),
        ({"mixing": (0.5, 0.6)}, "mixing must sum to 1, got sum 1.1"),
    ],
)
def test_refusals_name_the_field_and_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        Hyperparameters(2, **kwargs)
    assert str(err.value) == message
