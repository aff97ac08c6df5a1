"""The earthquake data checks (``check_data``, ``as_data``): each refusal's whole message, and the
boundaries where the docstrings put them (|x| <= 1e150 and S <= 2**53 are allowed, one past is
not, in float64 and in int64); and the ELBO reading q and the hyperparameters in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analytic.earthquake import (
    MAX_LOCATION,
    MAX_STRENGTH,
    Hyperparameters,
    MeanField,
    as_data,
    check_data,
    elbo,
    initial_mean_field,
)
from ppl_models.earthquake import simulate

X3 = torch.zeros(3, 2, dtype=torch.float64)
S3 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)


def _message(fn, *args) -> str:
    with pytest.raises(ValueError) as err:
        fn(*args)
    return str(err.value)


@pytest.mark.parametrize(
    "X, S, message",
    [
        ([[0.0, 0.0]], S3[:1], "X must be a tensor, got list (as_data converts lists and arrays)"),
        (X3, [1.0, 2.0, 3.0], "S must be a tensor, got list (as_data converts lists and arrays)"),
        (X3, S3[:, None], "S must be a tensor of shape (N,), got shape (3, 1)"),
        (X3[:0], S3[:0], "X and S are empty: at least one event is needed"),
        (X3, S3.to(torch.complex128),
         "X and S must be real numbers, got dtypes torch.float64 and torch.complex128"),
        (X3.to(torch.complex128), S3,
         "X and S must be real numbers, got dtypes torch.complex128 and torch.float64"),
        (X3.bool(), S3, "X and S must be real numbers, got dtypes torch.bool and torch.float64"),
    ],
)  # fmt: skip
def test_check_data_refusals_are_whole_sentences(X, S, message):
    assert _message(check_data, X, S) == message


def test_location_bound_is_inclusive():
    X = X3.clone()
    X[1, 0] = -MAX_LOCATION
    check_data(X, S3)
    X[1, 0] = np.nextafter(-MAX_LOCATION, -np.inf)
    assert "first at index 1" in _message(check_data, X, S3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_strength_bound_is_inclusive_in_float64_and_in_int64(dtype):
    S = torch.tensor([0, MAX_STRENGTH, 5], dtype=dtype)
    check_data(X3, S)
    # one past: 2**53 + 1 exists in int64 but not in float64 (the next float is 2**53 + 2)
    past = MAX_STRENGTH + (1 if dtype == torch.int64 else 2)
    S = torch.tensor([0, past, 5], dtype=dtype)
    assert _message(check_data, X3, S) == (
        f"S must hold integers in [0, 2**53]; 1 bad value(s), first at index 1: {S[1].item()!r}"
    )


def test_as_data_converts_to_float64_on_the_device_of_x():
    X, S = as_data(np.zeros((2, 2), dtype=np.float32), [3, 4])
    assert X.dtype == S.dtype == torch.float64 and S.tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    "X, S, message",
    [
        (object(), S3, "X must be an array of numbers, got object: "),
        (X3, object(), "S must be an array of numbers, got object: "),
        (X3.to(torch.complex64), S3, "X must be real, got dtype torch.complex64"),
        (X3, S3.to(torch.complex64), "S must be real, got dtype torch.complex64"),
    ],
)
def test_as_data_refusals_name_the_array(X, S, message):
    assert _message(as_data, X, S).startswith(message)


def test_elbo_reads_a_float32_q_and_the_hyperparameters_in_float64(float32_default):
    # float32 values are exact in float64: converting q first gives the same ELBO bit for bit,
    # and torch's float32 default must not round the mixing weights (0.1 is not a float32)
    hp = Hyperparameters(3, mixing=(0.1, 0.3, 0.6), tau=0.04, nu=(0.3, -0.7), alpha=1.5)
    X, S, *_ = simulate(hp, 50, seed=1)
    q = initial_mean_field(X, S, hp, torch.Generator().manual_seed(0))
    q32 = MeanField(*(t.float() for t in q))
    value = elbo(X, S, hp, q32)
    assert value.dtype == torch.float64
    assert float(value) == float(elbo(X, S, hp, MeanField(*(t.double() for t in q32))))
    torch.set_default_dtype(torch.float64)
    assert float(elbo(X, S, hp, q32)) == float(value)
