"""The earthquake closed forms' contracts that their numerical tests do not reach: q's checks
word for word, the canonical order of the labels, the starts' label order when pi has ties,
and the iteration budget of both CAVI drivers (in memory and streamed)."""

from __future__ import annotations

import pytest
import torch

from analytic.earthquake import (
    Hyperparameters,
    MeanField,
    canonical_order,
    cavi,
    check_mean_field,
    elbo,
    initial_mean_field,
)
from analytic.earthquake.streamed import data_totals, streamed_cavi
from ppl_models.earthquake import simulate

HP = Hyperparameters(3, mixing=(0.2, 0.5, 0.3), tau=0.5, rho=0.02, alpha=2.5, beta=0.4)
X, S, *_ = simulate(HP, 150, seed=4)


def _q(**fields) -> MeanField:
    q = initial_mean_field(X, S, HP, torch.Generator().manual_seed(0))
    return q._replace(**fields)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"loc": [[0.0, 0.0]] * 3}, "q.loc must be a tensor, got list"),
        ({"rate": torch.tensor([1.0, float("nan"), float("inf")])},
         "q.rate must be finite, got nan"),
        ({"probs": torch.tensor([[1.2, -0.2, 0.0]] * 150)},
         "q.probs must be non-negative with rows summing to 1"),
        ({"probs": torch.full((150, 3), 0.34)},
         "q.probs must be non-negative with rows summing to 1"),
    ],
    ids=["not-a-tensor", "first-non-finite", "negative-with-unit-rows", "rows-off"],
)  # fmt: skip
def test_a_bad_q_is_refused_word_for_word(fields, message):
    """Each refusal names the field and the first offending value; a probability below 0 is
    refused even when its row sums to 1."""
    with pytest.raises(ValueError) as info:
        check_mean_field(_q(**fields), 150, 3)
    assert str(info.value) == message


def test_rows_within_the_stated_1e_5_are_accepted():
    """ "Rows summing to 1 (to 1e-5)": rows off by 1.5e-5 pass (torch.allclose with atol 1e-5
    and its default rtol 1e-5 accepts up to 2e-5), rows off by 3e-5 do not."""
    probs = torch.full((150, 3), 1.0 / 3)
    check_mean_field(_q(probs=probs * (1 + 1.5e-5)), 150, 3)
    with pytest.raises(ValueError, match="rows summing to 1"):
        check_mean_field(_q(probs=probs * (1 + 3e-5)), 150, 3)


def test_elbo_refuses_what_is_not_a_mean_field_by_its_type():
    with pytest.raises(ValueError) as info:
        elbo(X, S, HP, tuple(_q()))
    assert str(info.value) == "q must be a MeanField, got tuple"


def test_canonical_order_sorts_pi_decreasing_and_maps_back():
    """pi = (0.2, 0.5, 0.3): CAVI runs in the order (1, 2, 0), with pi (0.5, 0.3, 0.2), and
    ``back`` undoes it; ties keep their given order (a stable sort)."""
    order, back, canonical = canonical_order(HP)
    assert order == [1, 2, 0] and back == [2, 0, 1]
    assert canonical.mixing == (0.5, 0.3, 0.2)
    tied = Hyperparameters(4, mixing=(0.2, 0.3, 0.3, 0.2))
    assert canonical_order(tied)[0] == [1, 2, 0, 3]


def test_starts_give_the_largest_pi_to_the_most_crowded_centre_also_with_tied_pis():
    """pi = (0.25, 0.5, 0.25) has two distinct values (ties are no reason to skip the label
    matching): the centre nearest to the most events gets label 1, the largest pi."""
    hp = Hyperparameters(3, mixing=(0.25, 0.5, 0.25), tau=0.5, rho=0.02, alpha=2.5, beta=0.4)
    Xh, Sh, *_ = simulate(hp, 300, seed=1)
    for seed in range(5):
        q = initial_mean_field(Xh, Sh, hp, torch.Generator().manual_seed(seed))
        crowd = torch.bincount(torch.cdist(Xh, q.loc).argmin(-1), minlength=3)
        assert int(crowd.argmax()) == 1


@pytest.mark.parametrize("driver", ["in memory", "streamed"])
def test_a_run_out_of_budget_stops_after_max_iter_sweeps_not_converged(driver):
    """With tol = 0 no sweep converges: the run stops after exactly max_iter = 4 sweeps, says
    it did not converge, and reports the last ELBO of a history that never decreases by more
    than rounding (1e-12 relative; near the optimum the sweeps gain less than that)."""
    if driver == "in memory":
        result = cavi(X, S, HP, max_iter=4, tol=0.0, num_init=1)
    else:
        result = streamed_cavi(lambda: [(X, S)], HP, sample=(X, S), max_iter=4, tol=0.0,
                               num_init=1)  # fmt: skip
    assert result.num_iter == 4 and result.converged is False
    assert result.elbo_history.shape == (5,) and result.elbo == result.elbo_history[-1]
    assert bool((result.elbo_history.diff() >= -1e-12 * abs(result.elbo)).all())


def test_float32_chunks_are_swept_in_float64():
    """A catalog handed over in float32 (as a Parquet reader may) is read in float64 by every
    pass: the run equals the one on the same numbers given in float64 to 1e-12 (a float32
    sweep would be off by ~1e-7)."""
    X32, S32 = X.float(), S.float()
    runs = [
        streamed_cavi(
            lambda data=data: [data],
            HP,
            sample=(X32.double(), S32.double()),
            num_init=1,
            max_iter=20,
        )  # fmt: skip
        for data in ((X32, S32), (X32.double(), S32.double()))
    ]
    assert runs[0].elbo.item() == pytest.approx(runs[1].elbo.item(), rel=1e-12)
    torch.testing.assert_close(runs[0].q.loc, runs[1].q.loc, rtol=1e-12, atol=0)


def test_totals_count_events_not_coordinates_and_refuse_an_empty_catalog():
    """Events whose coordinates sum to exactly 0 are still events; a catalog with no chunks
    is refused with the stated message (an empty chunk is refused by name before that)."""
    Xz = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    totals = data_totals(lambda: [(Xz, torch.tensor([3.0, 4.0]))])
    assert totals.num_events == 2 and totals.sum_x.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError) as info:
        data_totals(lambda: [])
    assert str(info.value) == "the catalog has no events: every chunk is empty"


@pytest.mark.parametrize("driver", ["in memory", "streamed"])
def test_an_elbo_beyond_float64_is_refused_naming_the_hyperparameters(driver):
    """Coordinates of 1e150 (the largest accepted) with tau = 1e10: tau |x|^2 overflows, the
    ELBO is not a number, and the run says so, naming tau, rho, alpha and beta."""
    hp = Hyperparameters(3, mixing=(0.2, 0.5, 0.3), tau=1e10, rho=0.02, alpha=2.5, beta=0.4)
    Xf = X / X.abs().max() * 1e150
    with pytest.raises(ValueError, match=r"the ELBO is nan: .* \(tau=10000000000\.0, rho=0\.02"):
        if driver == "in memory":
            cavi(Xf, S, hp, max_iter=2, num_init=1)
        else:
            streamed_cavi(lambda: [(Xf, S)], hp, sample=(Xf, S), max_iter=2, num_init=1)
