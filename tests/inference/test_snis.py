"""Self-normalised importance sampling on a target whose normaliser and moments are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.density import snis

# target exp(E), E(x) = -(x - mu)^2 / (2 s^2) (unnormalised): Z = sqrt(2 pi) s, E_p[x] = mu
MU, S = 0.7, 1.3
LOG_Z = 0.5 * math.log(2 * math.pi) + math.log(S)
PROPOSAL = torch.distributions.Normal(0.0, 2.5)  # wider than the target: bounded weights


def _draws(M, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, generator=g, dtype=torch.float64) * 2.5
    return x, -((x - MU) ** 2) / (2 * S**2) - PROPOSAL.log_prob(x)


def test_weights_and_ess_by_hand():
    log_w = torch.tensor([0.0, math.log(3.0), -math.inf, math.log(2.0)])
    torch.testing.assert_close(snis.normalised_weights(log_w),
                               torch.tensor([1 / 6, 3 / 6, 0.0, 2 / 6]))  # fmt: skip
    assert snis.effective_sample_size(log_w) == pytest.approx(36 / 14, rel=1e-14)  # 6^2 / 14
    assert snis.effective_sample_size(torch.zeros(50)) == pytest.approx(50, rel=1e-14)
    # weights spanning 1e300: no overflow, the same answer as the shifted weights
    assert snis.effective_sample_size(log_w + 700) == pytest.approx(36 / 14, rel=1e-12)


def test_snis_mean_and_log_normaliser_are_within_4_se_of_the_truth():
    x, log_w = _draws(20_000, seed=0)
    mean, se = snis.snis_mean(log_w, x)
    assert abs(mean.item() - MU) < 4 * se.item() and 0.005 < se.item() < 0.05
    est = snis.log_normaliser(log_w)
    assert abs(est.value - LOG_Z) < 4 * est.se and 0.001 < est.se < 0.02
    assert 0.2 * 20_000 < est.ess < 20_000


def test_standard_errors_are_calibrated_over_repetitions():
    """200 repetitions at M = 2,000: the z-scores (estimate - truth) / se have sd within
    [0.8, 1.2] (the sd of 200 draws of N(0, 1) has sd 0.05: 4 of them) and mean within 4 x
    0.07 of 0 (SNIS's O(1/M) bias is ~1e-3 se here)."""
    z_mean, z_log = [], []
    for seed in range(200):
        x, log_w = _draws(2000, seed=seed + 1)
        mean, se = snis.snis_mean(log_w, x)
        z_mean.append((mean.item() - MU) / se.item())
        est = snis.log_normaliser(log_w)
        z_log.append((est.value - LOG_Z) / est.se)
    for z in (np.array(z_mean), np.array(z_log)):
        assert 0.8 < z.std() < 1.2 and abs(z.mean()) < 0.28


def test_consistency_the_error_shrinks_like_one_over_root_m():
    errors = {}
    for M in (1_000, 1_000_000):
        x, log_w = _draws(M, seed=7)
        errors[M] = abs(snis.snis_mean(log_w, x)[0].item() - MU)
    assert errors[1_000_000] < 4 * 1.3 * 1.2 / 1000  # 4 se at M = 1e6 (se ~ 1.3e-3 x 1.2)


def test_vector_valued_f_gets_one_estimate_per_column():
    x, log_w = _draws(5000, seed=3)
    f = torch.stack([x, x**2], dim=1)
    mean, se = snis.snis_mean(log_w, f)
    assert mean.shape == (2,) and se.shape == (2,)
    assert abs(mean[1].item() - (S**2 + MU**2)) < 4 * se[1].item()


@pytest.mark.parametrize(
    "call, pattern",
    [(lambda: snis.normalised_weights(torch.zeros(1)), r"at least 2 draws, got \(1,\)"),
     (lambda: snis.normalised_weights(torch.zeros(2, 2)), r"1-D tensor .*got \(2, 2\)"),
     (lambda: snis.normalised_weights([0.0, 1.0]), "1-D tensor .*got list"),
     (lambda: snis.normalised_weights(torch.tensor([0.0, math.nan])), "finite or -inf, got nan"),
     (lambda: snis.log_normaliser(torch.tensor([0.0, math.inf])), "finite or -inf, got inf"),
     (lambda: snis.log_normaliser(torch.full((3,), -math.inf)), "all -inf"),
     (lambda: snis.snis_mean(torch.zeros(3), torch.zeros(4)), r"3 rows .*got \(4,\)")],
)  # fmt: skip
def test_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
