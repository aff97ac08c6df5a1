"""Streamed CAVI against the in-memory driver it must reproduce sweep by sweep."""

from __future__ import annotations

import math

import pytest
import torch

from analytic.earthquake import (
    Hyperparameters,
    MeanField,
    cavi,
    elbo,
    initial_mean_field,
    update_assignments,
)
from analytic.earthquake.streamed import (
    chunk_responsibilities,
    data_totals,
    seeded_globals,
    streamed_cavi,
    streamed_elbo,
)
from ppl_models.earthquake import simulate
from tests.analytic.test_earthquake import unequal_catalog

# alpha not 1 or 2, tau and rho not 1, pi not uniform (so the relabelling step matters)
HP = Hyperparameters(4, mixing=(0.1, 0.4, 0.2, 0.3), tau=0.05, rho=0.01, nu=(1.0, -2.0),
                     alpha=2.5, beta=0.3)  # fmt: skip
X, S, *_ = simulate(HP, 600, seed=3)


def chunked(size: int, X=X, S=S):
    def chunks():
        for i in range(0, X.shape[0], size):
            yield X[i : i + size], S[i : i + size]

    return chunks


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs()).max())


@pytest.mark.parametrize("size", [1, 97, 600, 1000])
def test_equals_in_memory_cavi_sweep_by_sweep(size):
    # float64 sums in another order differ by rounding only: 1e-10 relative is 10^5 ulps
    a = cavi(X, S, HP, num_init=3, seed=7, tol=1e-11, max_iter=60)
    b = streamed_cavi(chunked(size), HP, sample=(X, S), num_init=3, seed=7, tol=1e-11,
                      max_iter=60)  # fmt: skip
    assert a.num_iter == b.num_iter and a.converged == b.converged
    assert rel_diff(b.elbo_history, a.elbo_history) < 1e-10
    for name in ("loc", "precision", "concentration", "rate"):
        assert rel_diff(getattr(b.q, name), getattr(a.q, name)) < 1e-10, name
    assert b.q.probs is None


def test_from_init_and_relabelling_on_the_way():
    # a start whose labels are in the wrong order for pi: the run must relabel (a jump in the
    # history equal to the gain) exactly where the in-memory run does
    q0 = initial_mean_field(X, S, HP, torch.Generator().manual_seed(1))
    q0 = q0._replace(loc=q0.loc.flip(0))
    a = cavi(X, S, HP, init=q0, tol=1e-12, max_iter=80)
    b = streamed_cavi(chunked(128), HP, init=q0._replace(probs=None), tol=1e-12, max_iter=80)
    assert a.num_iter == b.num_iter
    assert rel_diff(b.elbo_history, a.elbo_history) < 1e-10
    assert rel_diff(b.q.loc, a.q.loc) < 1e-10
    # the final ELBO is the closed form at the streamed globals and their responsibilities
    probs = torch.cat([chunk_responsibilities(x, s, HP, b.q) for x, s in chunked(50)()])
    # the history's last entry uses r from the globals before the last update: at the fixed
    # point they agree to the tolerance of the run
    assert abs(elbo(X, S, HP, b.q._replace(probs=probs)) - b.elbo) < 1e-6 * abs(b.elbo)


def test_one_reduction_per_pass_of_4k_plus_1_numbers():
    sizes = []

    def reduce(flat):
        sizes.append(flat.numel())
        return flat

    result = streamed_cavi(chunked(200), HP, sample=(X, S), num_init=1, max_iter=5, tol=0.0,
                           reduce=reduce)  # fmt: skip
    # the data pass (N, sum x, sum s, sum |x|^2, sum log s!), then one per sweep
    assert sizes == [6] + [4 * HP.num_clusters + 1] * result.num_iter


def test_reduce_is_applied_as_a_sum_across_processes():
    # two "processes" holding the two halves, reduced by adding the other half's vector: the
    # same run as one process holding everything
    half = X.shape[0] // 2
    shares = [chunked(100, X[:half], S[:half]), chunked(100, X[half:], S[half:])]
    other = []

    def reduce_second(flat):  # called by the run of the first share; adds the second's
        return flat + other.pop(0)

    totals = data_totals(shares[1])
    other.append(torch.cat([torch.tensor([float(totals.num_events)]), totals.sum_x,
                            totals.sum_s.reshape(1), totals.consts.sum_sq_x.reshape(1),
                            totals.consts.sum_log_factorial_s.reshape(1)]))  # fmt: skip
    whole = data_totals(chunked(100))
    combined = data_totals(shares[0], reduce_second)
    assert combined.num_events == whole.num_events == 600
    torch.testing.assert_close(combined.sum_x, whole.sum_x, rtol=1e-13, atol=0)


def test_responsibilities_of_a_chunk_equal_update_assignments():
    q = initial_mean_field(X, S, HP, torch.Generator().manual_seed(2))
    r = chunk_responsibilities(X[:40], S[:40], HP, q._replace(probs=None))
    torch.testing.assert_close(r, update_assignments(X[:40], S[:40], HP, q), rtol=0, atol=1e-15)


def test_data_totals():
    t = data_totals(chunked(77))
    assert t.num_events == 600
    torch.testing.assert_close(t.sum_x, X.sum(0), rtol=1e-13, atol=0)
    torch.testing.assert_close(t.consts.sum_log_factorial_s, torch.lgamma(S + 1).sum(),
                               rtol=1e-13, atol=0)  # fmt: skip


def test_bad_chunk_is_named_with_its_first_event():
    Xbad = X.clone()
    Xbad[250, 1] = math.nan
    with pytest.raises(ValueError) as info:
        streamed_cavi(chunked(100, Xbad), HP, sample=(X, S))
    assert str(info.value) == (
        "chunk 2 (events from 200): X must be finite with |coordinates| <= 1e+150; 1 bad "
        "row(s), first at index 50: [" + f"{X[250, 0].item()}, nan]"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "streamed_cavi needs a sample of events to seed from, or init"),
        ({"sample": (X, S), "max_iter": 0}, "max_iter must be an integer >= 1, got 0"),
        ({"sample": (X, S), "num_init": True}, "num_init must be an integer >= 1, got True"),
        ({"sample": (X, S), "tol": math.inf}, "tol must be a finite number >= 0, got inf"),
        ({"sample": (X, S), "seed": -1}, "seed must be an integer in [0, 2**63), got -1"),
        (
            {"init": MeanField(None, torch.zeros(3, 2), *torch.ones(3, 3))},
            "q.loc must have shape (4, 2), got (3, 2)",
        ),
    ],
)
def test_refusals(kwargs, message):
    with pytest.raises(ValueError) as info:
        streamed_cavi(chunked(100), HP, **kwargs)
    assert str(info.value) == message


def test_empty_catalog():
    with pytest.raises(ValueError, match="the catalog has no events: every chunk is empty"):
        streamed_cavi(lambda: iter([]), HP, sample=(X, S))


@pytest.mark.parametrize("default", ["float64", "float32"])
def test_seeded_globals_from_the_whole_catalog_are_the_in_memory_start(default, request):
    # the docstring's claim: with the whole catalog as the sample, the seeding is
    # initial_mean_field's (precision rho + tau N/K, a = alpha + mean(S) N/K, b = beta + N/K),
    # in float64 whatever torch's default dtype
    if default == "float32":
        request.getfixturevalue("float32_default")
    totals = data_totals(chunked(97))
    q = seeded_globals((X, S), totals, HP, torch.Generator().manual_seed(5))
    expected = initial_mean_field(X, S, HP, torch.Generator().manual_seed(5))
    for name in ("loc", "precision", "concentration", "rate"):
        assert getattr(q, name).dtype == torch.float64, name
        assert rel_diff(getattr(q, name), getattr(expected, name)) < 1e-14, name
    assert q.probs is None


def test_a_float32_default_changes_nothing(float32_default):
    # every accumulator and start is float64 whatever torch's default: the same sweeps as the
    # in-memory driver (which computes in float64) to 1e-10, and the same seeded start
    a = cavi(X, S, HP, num_init=2, seed=7, tol=1e-11, max_iter=40)
    b = streamed_cavi(chunked(97), HP, sample=(X, S), num_init=2, seed=7, tol=1e-11,
                      max_iter=40)  # fmt: skip
    assert rel_diff(b.elbo_history, a.elbo_history) < 1e-10
    for name in ("loc", "precision", "concentration", "rate"):
        assert rel_diff(getattr(b.q, name), getattr(a.q, name)) < 1e-10, name


def test_a_seed_fixes_the_run_whatever_the_global_generator():
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        runs.append(streamed_cavi(chunked(97), HP, sample=(X, S), num_init=2, seed=3,
                                  max_iter=5))  # fmt: skip
    assert torch.equal(runs[0].elbo_history, runs[1].elbo_history)


def test_float32_globals_are_read_in_float64():
    # q's globals are converted to float64 before use (float32 values are exact in float64)
    q = cavi(X, S, HP, num_init=1, seed=1, max_iter=5).q
    q32 = MeanField(None, *(t.float() for t in q[1:]))
    q64 = MeanField(None, *(t.double() for t in q32[1:]))
    totals = data_totals(chunked(97))
    assert float(streamed_elbo(chunked(97), totals, HP, q32)[0]) == float(
        streamed_elbo(chunked(97), totals, HP, q64)[0]
    )


@pytest.mark.parametrize(
    "q, message",
    [
        ((1, 2, 3, 4, 5), "q must be a MeanField, got tuple"),
        (MeanField(None, [[0.0, 0.0]], torch.ones(1), torch.ones(1), torch.ones(1)),
         "q.loc must be a tensor, got list"),
    ],
)  # fmt: skip
def test_bad_globals_are_named(q, message):
    with pytest.raises(ValueError) as err:
        streamed_elbo(chunked(97), data_totals(chunked(97)), Hyperparameters(1), q)
    assert str(err.value) == message


@pytest.mark.parametrize("options", [{"max_iter": 8, "tol": 1e-4}, {"tol": 1e-2}],
                         ids=["relabel-on-the-last-step", "relabel-below-tol"])  # fmt: skip
def test_the_relabelling_step_keeps_the_budget_and_tolerance_of_the_in_memory_run(options):
    # the catalog and start of tests/analytic/test_earthquake.py's _relabelling_run: a
    # relabelling on the last step of a budget of 8 is taken, one worth 40 nats < tol * |ELBO|
    # is not, exactly as in memory (the same steps; 1e-10 relative is rounding)
    X1, S1, hp = unequal_catalog(1)
    X1, S1 = X1[:600], S1[:600]
    a = cavi(X1, S1, hp, num_init=1, seed=4, **options)
    b = streamed_cavi(chunked(128, X1, S1), hp, sample=(X1, S1), num_init=1, seed=4, **options)
    assert (b.num_iter, b.converged) == (a.num_iter, a.converged)
    assert a.num_iter == (8 if "max_iter" in options else 5)
    assert rel_diff(b.elbo_history, a.elbo_history) < 1e-10
    assert rel_diff(b.q.loc, a.q.loc) < 1e-10


@pytest.mark.parametrize(
    "change",
    [
        lambda X, S, call: (X[: 599 if call else 600], S[: 599 if call else 600]),  # one lost
        lambda X, S, call: (X, S + (1.0 if call else 0.0) * (torch.arange(600) == 5)),  # s + 1
        lambda X, S, call: (X + (1e-3 if call else 0.0), S),  # every location moved a little
    ],
    ids=["an event dropped", "one strength + 1", "locations moved"],
)
def test_chunks_that_change_between_passes_are_refused(change):
    """A chunks() that gives other events after the first pass (a file rewritten under the
    run, a generator that does not start over) used to return a fit of no catalog. Each pass's
    N, sum x and sum s (free: r's rows sum to 1) must be the first pass's, to 1e-9 relative."""
    calls = []

    def chunks():
        calls.append(None)
        yield change(X, S, len(calls) > 1)

    with pytest.raises(ValueError, match="the chunks changed between passes"):
        streamed_cavi(chunks, HP, sample=(X, S), num_init=1, max_iter=3)
