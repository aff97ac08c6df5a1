"""The defaults the docstrings and the README state, on the functions a user calls without
them: a changed default changes every such call's result (another restart, another seed, a
longer or shorter run), so each is pinned here."""

from __future__ import annotations

import inspect

import pytest

from analytic import earthquake, earthquake_stream, expgauss, ring


@pytest.mark.parametrize(
    "function, defaults",
    [
        (earthquake.cavi, {"max_iter": 500, "tol": 1e-8, "num_init": 5, "seed": 0}),
        (earthquake_stream.streamed_cavi, {"max_iter": 500, "tol": 1e-8, "num_init": 5, "seed": 0}),
        (ring.em, {"num_init": 10, "max_iter": 500, "tol": 1e-10, "seed": 0}),
        (expgauss.ml_theta, {"rtol": 1e-13, "max_iter": 200}),
    ],
    ids=lambda v: getattr(v, "__qualname__", ""),
)
def test_the_stated_defaults(function, defaults):
    parameters = inspect.signature(function).parameters
    assert {name: parameters[name].default for name in defaults} == defaults
