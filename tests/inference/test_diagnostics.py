"""ArviZ diagnostics: InferenceData layout, PSIS k-hat that can fail, NUTS as the reference."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch

from analytic import conjugate, expgauss
from analytic.earthquake import Hyperparameters, cavi, log_joint_marginal
from guides.conjugate import GaussianGuide
from guides.earthquake import EarthquakeGuide
from guides.expgauss import ExpGaussGuide
from inference import diagnostics as D
from inference.diagnostics import nuts
from inference.diagnostics.common import arviz
from ppl_models import conjugate as conjugate_model
from ppl_models import earthquake as earthquake_model
from ppl_models import expgauss as expgauss_model

PRIOR = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
QUAKE_DIMS = {"mu": ["cluster", "coord"], "lam": ["cluster"]}


def _conjugate():
    x, _ = conjugate_model.simulate(PRIOR, 0.5, 10, seed=0)
    return (x, PRIOR, 0.5), conjugate.posterior(x, PRIOR, 0.5)


@pytest.fixture(scope="module")
def quake():
    hp = Hyperparameters(2, tau=1.0, rho=0.01, alpha=5.0, beta=0.5)
    X, S, *_ = earthquake_model.simulate(hp, 60, seed=1)
    return hp, X, S, cavi(X, S, hp, seed=0).q


def test_inference_data_has_groups_dims_shapes_and_round_trips_netcdf(quake, tmp_path):
    hp, X, S, q = quake
    coords = {"cluster": [0, 1], "coord": ["lon", "lat"]}
    idata = D.to_inference_data(
        earthquake_model.model, EarthquakeGuide(q), X, S, hp, num_samples=200,
        sites=["mu", "lam"], dims=QUAKE_DIMS, coords=coords, elbo_history=torch.arange(7.0),
        observed_data={"X": X, "S": S},
    )  # fmt: skip
    assert set(idata.groups()) == {"posterior", "observed_data", "vi_elbo"}
    assert idata.posterior["mu"].dims == ("chain", "draw", "cluster", "coord")
    assert idata.posterior["mu"].shape == (1, 200, 2, 2)
    assert idata.posterior["lam"].shape == (1, 200, 2)
    assert list(idata.posterior["mu"].coords["coord"].values) == ["lon", "lat"]
    assert idata.vi_elbo["elbo"].dims == ("step",) and idata.vi_elbo["elbo"].size == 7
    # draws follow q: the mean of mu within 4 SE of q's mean (sd p^-1/2 / sqrt(200))
    se = q.precision.rsqrt().numpy()[:, None] / math.sqrt(200)
    assert np.all(np.abs(idata.posterior["mu"].values[0].mean(0) - q.loc.numpy()) < 4 * se)
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    back = arviz().from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    np.testing.assert_array_equal(back.posterior["mu"].values, idata.posterior["mu"].values)
    np.testing.assert_array_equal(back.observed_data["X"].values, X.numpy())


def test_psis_at_the_exact_posterior_is_good_with_uniform_weights():
    """q = p(z | x): every log weight equals log p(x) (rtol 1e-10), so the smoothed weights are
    uniform, the ESS is S, and k-hat < 0.5."""
    args, (loc, tril) = _conjugate()
    result = D.psis_check(conjugate_model.model, GaussianGuide(loc, tril), *args,
                          num_samples=1000)  # fmt: skip
    np.testing.assert_allclose(result.log_weights, conjugate.log_evidence(*args).item(),
                               rtol=1e-10)  # fmt: skip
    assert result.khat < 0.5 and result.verdict.startswith("good")
    assert result.ess == pytest.approx(1000, rel=1e-8)


def test_psis_flags_a_too_narrow_q():
    """q with 0.2 x the posterior's scale: the weights' tail index is 1 - 0.2^2 = 0.96 in
    theory (exp of a quadratic under a narrow Gaussian); k-hat must exceed 0.7, and the
    verdict say so. A check that can fail."""
    args, (loc, tril) = _conjugate()
    result = D.psis_check(conjugate_model.model, GaussianGuide(loc, 0.2 * tril), *args,
                          num_samples=4000)  # fmt: skip
    assert result.khat > 0.7
    assert result.verdict.startswith("not trustworthy")


def test_psis_corrected_means_move_towards_the_posterior():
    """A diagonal q with its mean shifted by 0.1: the PSIS-corrected mean is closer to the
    exact posterior mean than q's own."""
    args, (loc, tril) = _conjugate()
    guide = GaussianGuide(loc + 0.1, torch.diag(torch.diagonal(tril)), full=False)
    result = D.psis_check(conjugate_model.model, guide, *args, num_samples=4000)
    assert np.abs(result.means["z"] - loc.numpy()).max() < 0.5 * 0.1
    assert np.abs(result.raw_means["z"] - loc.numpy()).max() > 0.08


def test_earthquake_marginal_log_joint_equals_pyro_with_z_enumerated(quake):
    """log p(X, S, mu, lambda), Z summed out: TraceEnum_ELBO with a point-mass guide gives
    exactly -log p (rtol 1e-10), at three random (mu, lambda)."""
    hp, X, S, _ = quake
    gen = torch.Generator().manual_seed(0)
    mu = 5 * torch.randn(3, 2, 2, generator=gen)
    lam = torch.rand(3, 2, generator=gen) * 10 + 1
    fast = log_joint_marginal(X, S, hp, mu, lam)
    model = pyro.infer.config_enumerate(earthquake_model.model, "parallel")
    for i in range(3):

        def guide(*_, i=i):
            with pyro.plate("cluster", 2, dim=-1):
                pyro.sample("mu", dist.Delta(mu[i]).to_event(1))
                pyro.sample("lam", dist.Delta(lam[i]))

        loss = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, X, S, hp)
        assert fast[i].item() == pytest.approx(-loss, rel=1e-10)


def test_nuts_matches_the_exact_expgauss_posterior_and_reports_the_vi_sd_ratio():
    """z | x at theta = 2/x (x = 1) is N(x - theta, 1) truncated to z > 0: NUTS's posterior
    mean (2 chains x 300 draws) within 4 Monte Carlo standard errors of the exact mean; the VI
    row (q = Expo(2), sd 0.5) reports sd ratio q / NUTS."""
    x, theta = torch.tensor([1.0]), torch.tensor(2.0)
    guide = ExpGaussGuide(torch.tensor([2.0]))
    vi = D.to_inference_data(expgauss_model.model, guide, x, theta, num_samples=2000,
                             dims={"z": ["obs"]})  # fmt: skip
    result = D.compare_with_nuts(expgauss_model.model, vi, x, theta, num_samples=300,
                                 warmup_steps=300, dims={"z": ["obs"]})  # fmt: skip
    (row,) = result.rows
    exact = expgauss.posterior_mean(1.0, 2.0).item()
    mcse = row["nuts_sd"] / math.sqrt(row["ess_bulk"])
    assert abs(row["nuts_mean"] - exact) < 4 * mcse
    assert row["r_hat"] < 1.05
    # sd ratio against the exact one, 0.5 / sd(truncated N(-1, 1)) = 1.1206 (scipy): the
    # relative s.e. of a sample sd is sqrt((kurtosis - 1) / 4n), kurtosis 9 for q's 2000
    # exponential draws and ~3 (at most; a truncated normal is lighter-tailed than 9) for NUTS
    exact_sd = scipy.stats.truncnorm(a=1.0, b=math.inf, loc=-1.0, scale=1.0).std()
    rel_se = math.sqrt(8 / (4 * 2000) + 2 / (4 * row["ess_bulk"]))
    assert abs(row["sd_ratio"] / (0.5 / exact_sd) - 1) < 4 * rel_se
    assert abs(row["vi_mean"] - 0.5) < 4 * 0.5 / math.sqrt(2000)  # q's mean, 1/rate


def testinterval_overlap_equals_the_closed_form_for_two_known_distributions():
    """Central 90% intervals of Expo(2) = [0.0256, 1.498] and of N(-1, 1) truncated to z > 0
    = [0.0333, 1.412] (scipy quantiles): intersection / union = 0.9364. From 10^6 draws each,
    the endpoints' s.e. is at most 0.0021 (sqrt(p(1-p)/n) / density), so 0.01 is ~5 s.e.;
    "intersection / intersection" (1.0) or "/ the first interval" (0.936 -> 0.9574) is not."""
    from inference.diagnostics import interval_overlap

    rng = np.random.default_rng(0)
    q = scipy.stats.expon(scale=0.5).rvs(10**6, random_state=rng)
    p = scipy.stats.truncnorm(a=1.0, b=np.inf, loc=-1.0, scale=1.0).rvs(10**6, random_state=rng)
    assert interval_overlap(q, p) == pytest.approx(0.93645, abs=0.01)
    assert interval_overlap(q, q + 10.0) == 0.0


def testinterval_overlap_of_narrow_and_of_point_intervals():
    """Narrow intervals (union 0.3, below 1) that do not meet overlap 0, half-overlapping
    ones 1/3; two draws that are all one value (a point mass in both) overlap fully: 1, not
    0/0."""
    from inference.diagnostics import interval_overlap

    a = np.linspace(0.0, 0.1, 101)
    assert interval_overlap(a, a + 0.2) == 0.0
    assert interval_overlap(a, a + 0.045) == pytest.approx(1 / 3, rel=1e-9)
    assert interval_overlap(np.full(50, 2.5), np.full(80, 2.5)) == 1.0


def test_psis_of_heavy_tailed_weights_says_so_in_words_not_in_a_warning():
    """Log weights with a Pareto tail of shape 1 (k-hat about 1, where ArviZ warns): the k-hat
    and the verdict say it; ArviZ's UserWarning is not passed on (warnings are errors here)."""
    rng = np.random.default_rng(0)
    lw = np.log(rng.pareto(1.0, 2000) + 1.0)
    _, khat, _ = D.psis_from_log_weights(lw)
    assert khat > 0.7 and D.verdict(float(khat)).startswith("not")


def test_psis_takes_log_weights_that_still_require_grad():
    """Log weights straight from a differentiable computation (requires_grad) are read as
    numbers: the same k-hat and ESS as from their detached copy."""
    lw = torch.randn(400, generator=torch.Generator().manual_seed(0)).requires_grad_()
    got, expected = D.psis_from_log_weights(lw), D.psis_from_log_weights(lw.detach().numpy())
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_nuts_with_enumerated_z_agrees_with_cavi_on_the_cluster_means(quake):
    """60 events, K = 2: NUTS (Z summed out, chains started at the CAVI means so the labels
    match) and CAVI agree on every coordinate of the cluster means within one NUTS posterior
    sd."""
    hp, X, S, q = quake
    coords = {"cluster": [0, 1], "coord": ["lon", "lat"]}
    vi = D.to_inference_data(
        earthquake_model.model, EarthquakeGuide(q), X, S, hp, num_samples=500,
        sites=["mu", "lam"], dims=QUAKE_DIMS, coords=coords,
    )  # fmt: skip
    result = D.compare_with_nuts(
        earthquake_model.model, vi, X, S, hp, num_samples=100, warmup_steps=100, num_chains=1,
        init_values={"mu": q.loc, "lam": q.concentration / q.rate},
        dims=QUAKE_DIMS, coords=coords,
    )  # fmt: skip
    for row in result.rows:
        if row["parameter"].startswith("mu"):
            assert abs(row["vi_mean"] - row["nuts_mean"]) < row["nuts_sd"], row


def test_standardise_makes_the_reference_0_1_and_keeps_shifts_and_sd_ratios():
    rng = np.random.default_rng(0)
    ref = rng.normal([2.0, -7.0], [0.5, 3.0], size=(2, 400, 2))  # (chain, draw, coord)
    other = 2.0 + 1.5 * (ref - ref.mean((0, 1)))  # shifted and 1.5 times as wide
    post = {
        name: arviz().from_dict(posterior={"mu": v}) for name, v in (("ref", ref), ("q", other))
    }
    out = D.standardise(post, "ref")
    z_ref, z_q = (out[n].posterior["mu"].values for n in ("ref", "q"))
    np.testing.assert_allclose(z_ref.mean((0, 1)), 0, atol=1e-12)
    np.testing.assert_allclose(z_ref.std((0, 1)), 1, rtol=1e-12)
    shift = (2.0 - ref.mean((0, 1))) / ref.std((0, 1))
    np.testing.assert_allclose(z_q.mean((0, 1)), shift, rtol=1e-10)
    np.testing.assert_allclose(z_q.std((0, 1)), 1.5, rtol=1e-12)


def test_psis_inference_data_holds_each_items_results():
    lw = torch.arange(12.0).reshape(3, 4)
    idata = D.psis_inference_data(lw, [0.1, 0.6, 0.9], [30.0, 8.0, 2.0])
    psis = idata.psis
    assert dict(psis.sizes) == {"item": 3, "draw": 4}
    np.testing.assert_array_equal(psis["log_weights"].values, lw.numpy())
    np.testing.assert_array_equal(psis["khat"].values, [0.1, 0.6, 0.9])
    np.testing.assert_array_equal(psis["ess"].values, [30.0, 8.0, 2.0])
    assert list(psis["item"].values) == [0, 1, 2] and list(psis["draw"].values) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "khat, start",
    [(float("nan"), "undefined"), (0.49, "good"), (0.5, "usable"), (0.69, "usable"),
     (0.7, "not trustworthy"), (1.3, "not trustworthy")],
)  # fmt: skip
def test_verdict_thresholds_are_half_open_at_0_5_and_0_7(khat, start):
    """Yao et al. (2018): k < 0.5 good, 0.5 <= k < 0.7 usable, k >= 0.7 not trustworthy; the
    whole sentence is what the summary table prints."""
    words = {
        "undefined": "undefined (the log weights are not finite)",
        "good": "good: q is close to the posterior, and importance sampling corrects what is left",
        "usable": "usable: PSIS-corrected estimates are reliable; raw VI estimates less so",
        "not trustworthy": "not trustworthy: q misses posterior mass (its tails are too light); "
        "do not use it",
    }
    assert D.verdict(khat) == words[start]


def test_psis_of_several_items_is_each_items_own():
    """(items, draws) log weights: k-hat, ESS and normalised weights per row, as if each row
    were passed alone (the ESS sums over the draws, not over everything)."""
    rng = np.random.default_rng(4)
    lw = rng.standard_t(3, size=(3, 500))
    smoothed, khat, ess = D.psis_from_log_weights(lw)
    assert smoothed.shape == (3, 500) and khat.shape == (3,) and ess.shape == (3,)
    for i in range(3):
        alone = D.psis_from_log_weights(lw[i])
        for batched, single in zip((smoothed[i], khat[i], ess[i]), alone):
            np.testing.assert_allclose(batched, single, rtol=1e-12)


# -- a small model with two latents, a keyword argument, a plate and a scale ---------------------
# a ~ N(0, 1); b ~ N(a, 1) (a 2 x 2 block); x_n ~ N(mean(b), noise) in a plate, the whole model
# scaled by 2.5. Its log joint is written out below with torch.distributions, independently of
# Pyro's traces.
SCALE, NOISE = 2.5, 0.7
X_SMALL = torch.tensor([0.4, -0.2, 1.1])


def _small_model(x, *, noise):
    with pyro.poutine.scale(scale=SCALE):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        block = a[..., None, None].expand(a.shape + (2, 2))  # broadcasts under a particle plate
        b = pyro.sample("b", dist.Normal(block, 1.0).to_event(2))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(b.mean((-1, -2)), noise), obs=x)


def _small_guide(x, *, noise):
    pyro.sample("a", dist.Normal(0.3, 0.8))
    pyro.sample("b", dist.Normal(torch.tensor([[0.5, 0.1], [0.2, 0.4]]), 0.6).to_event(2))


def _small_log_joint(draws):
    """(S,): the model's log joint times SCALE, at draws a (S,), b (S, 2, 2)."""
    a, b = draws["a"], draws["b"]
    lp = torch.distributions.Normal(0.0, 1.0).log_prob(a)
    lp = lp + torch.distributions.Normal(a[:, None, None], 1.0).log_prob(b).sum((-1, -2))
    mean = b.mean((-1, -2))[:, None]
    return SCALE * (lp + torch.distributions.Normal(mean, NOISE).log_prob(X_SMALL).sum(-1))


def _small_log_q(draws):
    a, b = draws["a"], draws["b"]
    loc = torch.tensor([[0.5, 0.1], [0.2, 0.4]])
    return torch.distributions.Normal(0.3, 0.8).log_prob(a) + torch.distributions.Normal(
        loc, 0.6
    ).log_prob(b).sum((-1, -2))


def test_guide_log_weights_are_the_scaled_log_joint_minus_log_q_by_hand():
    """log w = SCALE log p(x, a, b) - log q(a, b), each written out with torch.distributions
    (rtol 1e-12); the keyword argument reaches the model and the guide; the plate nesting (1)
    is read from the model; draws keep their natural shapes (S, 2, 2)."""
    log_w, draws = D.guide_log_weights(
        _small_model, _small_guide, X_SMALL, num_samples=50, noise=NOISE
    )
    assert draws["a"].shape == (50,) and draws["b"].shape == (50, 2, 2)
    expected = _small_log_joint(draws) - _small_log_q(draws)
    torch.testing.assert_close(log_w, expected, rtol=1e-12, atol=0)


def test_guide_log_weights_with_a_site_subset_and_a_log_joint_function():
    log_w, draws = D.guide_log_weights(
        _small_model, _small_guide, X_SMALL, num_samples=40, noise=NOISE, sites=["a"],
        log_joint_fn=lambda d: torch.zeros(40) + 7.0,
    )  # fmt: skip
    assert set(draws) == {"a"}
    a = torch.distributions.Normal(0.3, 0.8)
    torch.testing.assert_close(log_w, 7.0 - a.log_prob(draws["a"]), rtol=1e-12, atol=0)


def test_psis_check_defaults_and_pass_through():
    """Defaults: 1000 draws, seed 0, plate nesting read from the model. ``sites``,
    ``log_joint_fn`` and keyword arguments reach the weights: a log joint shifted by 7 shifts
    every log weight by exactly 7 and leaves k-hat unchanged."""
    result = D.psis_check(_small_model, _small_guide, X_SMALL, noise=NOISE)
    assert result.num_samples == 1000 and result.log_weights.shape == (1000,)
    same = D.psis_check(_small_model, _small_guide, X_SMALL, noise=NOISE, num_samples=1000,
                        seed=0, max_plate_nesting=1)  # fmt: skip
    np.testing.assert_array_equal(result.log_weights, same.log_weights)
    other = D.psis_check(_small_model, _small_guide, X_SMALL, noise=NOISE, seed=1)
    assert not np.array_equal(result.log_weights, other.log_weights)
    assert result.means["b"].shape == (2, 2) and result.raw_means["b"].shape == (2, 2)
    assert result.means["a"].shape == () and set(result.means) == {"a", "b"}

    shifted = D.psis_check(
        _small_model, _small_guide, X_SMALL, noise=NOISE,
        log_joint_fn=lambda d: _small_log_joint(d) + 7.0,
    )  # fmt: skip
    np.testing.assert_allclose(shifted.log_weights, result.log_weights + 7.0, rtol=1e-12)
    assert shifted.khat == pytest.approx(result.khat, rel=1e-9)
    only_a = D.psis_check(_small_model, _small_guide, X_SMALL, noise=NOISE, sites=["a"])
    assert set(only_a.means) == {"a"}


def _nested_plates(loc: float):
    """A model (loc 0) or guide (loc 0.1) with z ~ N(loc, 1) in plates of 3 (dim -2) x 4 (-1)."""

    def program():
        with pyro.plate("rows", 3, dim=-2), pyro.plate("cols", 4, dim=-1):
            pyro.sample("z", dist.Normal(loc, 1.0))

    return program


def test_plate_nesting_is_read_from_nested_plates():
    """Two nested plates (dims -1 and -2): the particle plate goes to dim -3 by itself; an
    explicit max_plate_nesting=1 collides with the model's plate at dim -2."""
    model, guide = _nested_plates(0.0), _nested_plates(0.1)
    log_w, draws = D.guide_log_weights(model, guide, num_samples=6)
    assert draws["z"].shape == (6, 3, 4)
    z = draws["z"]
    by_hand = (torch.distributions.Normal(0.0, 1.0).log_prob(z)
               - torch.distributions.Normal(0.1, 1.0).log_prob(z)).sum((-1, -2))  # fmt: skip
    torch.testing.assert_close(log_w, by_hand, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match='plates "rows" and "psis_particles", collide at dim=-2'):
        D.guide_log_weights(model, guide, num_samples=6, max_plate_nesting=1)


def test_guessed_plate_nesting_on_an_autoguide_with_a_constrained_latent():
    """Pyro's AutoNormal on a LogNormal scale and a data plate: the guessed nesting gives the
    same log weights as the explicit max_plate_nesting=1, bit for bit."""
    from pyro.infer.autoguide import AutoNormal

    def model(x):
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        with pyro.plate("n", len(x)):
            pyro.sample("x", dist.Normal(0.0, s), obs=x)

    x = torch.randn(20, generator=torch.Generator().manual_seed(0))
    guide = AutoNormal(model)
    guide(x)
    guessed = D.psis_check(model, guide, x, num_samples=300)
    explicit = D.psis_check(model, guide, x, num_samples=300, max_plate_nesting=1)
    np.testing.assert_array_equal(guessed.log_weights, explicit.log_weights)


def test_a_model_without_plates_and_a_guide_outside_the_support():
    """No plate anywhere: the nesting read is 0 (particles at dim -1) and the weights are
    log Uniform(0, 1)(u) + log N(0.3 | u, 1) - log N(u | 0.5, 1) by hand. Draws outside (0, 1)
    get weight exp(-inf) = 0 (distribution validation is off while weighing: with it, Pyro
    would raise on the first such draw)."""

    def model():
        u = pyro.sample("u", dist.Uniform(0.0, 1.0))
        pyro.sample("y", dist.Normal(u, 1.0), obs=torch.tensor(0.3))

    def guide():
        pyro.sample("u", dist.Normal(0.5, 1.0))

    pyro.set_rng_seed(0)
    log_w, draws = D.guide_log_weights(model, guide, num_samples=200)
    u = draws["u"]
    assert u.shape == (200,) and bool(((u < 0) | (u > 1)).any())
    inside = (u > 0) & (u < 1)
    by_hand = (torch.distributions.Normal(u, 1.0).log_prob(torch.tensor(0.3))
               - torch.distributions.Normal(0.5, 1.0).log_prob(u))  # fmt: skip
    torch.testing.assert_close(log_w[inside], by_hand[inside], rtol=1e-12, atol=0)
    assert bool((log_w[~inside] == -math.inf).all())


def test_psis_check_passes_max_plate_nesting_on():
    """An explicit max_plate_nesting reaches the weights: 1 is too small for two nested plates
    and is refused with Pyro's collision message, as guide_log_weights refuses it."""
    model, guide = _nested_plates(0.0), _nested_plates(0.1)
    assert D.psis_check(model, guide, num_samples=50).means["z"].shape == (3, 4)
    with pytest.raises(ValueError, match='plates "rows" and "psis_particles", collide at dim=-2'):
        D.psis_check(model, guide, num_samples=50, max_plate_nesting=1)


def test_flat_labels_name_every_coordinate_and_keep_scalars_bare():
    """_flat turns a (chain, draw, ...) posterior variable into (chain * draw, P) values and P
    labels ``name[coord, coord]`` in C order; a scalar variable keeps its bare name."""
    import xarray as xr

    values = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    da = xr.DataArray(values, dims=("chain", "draw", "cluster", "coord"), name="mu",
                      coords={"cluster": [0, 1], "coord": ["lon", "lat"]})  # fmt: skip
    flat, labels = nuts._flat(da)
    assert labels == ["mu[0, lon]", "mu[0, lat]", "mu[1, lon]", "mu[1, lat]"]
    np.testing.assert_array_equal(flat, values.reshape(6, 4))
    scalar = xr.DataArray(np.ones((2, 3)), dims=("chain", "draw"), name="tau")
    flat, labels = nuts._flat(scalar)
    assert labels == ["tau"] and flat.shape == (6, 1)


def test_nuts_comparison_keeps_its_books(capsys):
    """compare_with_nuts with its defaults (2 chains x 300 draws, no progress bar): every row's
    numbers recomputed from the two posteriors it returns (sds with ddof = 1, the ratio, ArviZ's
    r-hat and bulk ESS), the dims and coords passed through, the summary and the time."""
    import pandas as pd

    x, theta = torch.tensor([1.0]), torch.tensor(2.0)
    guide = ExpGaussGuide(torch.tensor([2.0]))
    dims, coords = {"z": ["obs"]}, {"obs": ["x1"]}
    vi = D.to_inference_data(expgauss_model.model, guide, x, theta, num_samples=500, dims=dims,
                             coords=coords)  # fmt: skip
    result = D.compare_with_nuts(expgauss_model.model, vi, x, theta, dims=dims, coords=coords)
    assert capsys.readouterr().err == ""  # no progress bar by default
    posterior = result.nuts.posterior["z"]
    assert posterior.shape == (2, 300, 1) and posterior.dims == ("chain", "draw", "obs")
    assert list(posterior.coords["obs"].values) == ["x1"]
    assert result.vi is vi and isinstance(result.summary, pd.DataFrame)
    assert list(result.summary.index) == ["z[x1]"]
    assert 0 < result.seconds < 600
    (row,) = result.rows
    v = vi.posterior["z"].values.reshape(-1)
    n = posterior.values.reshape(-1)
    assert set(row) == {"parameter", "vi_mean", "vi_sd", "nuts_mean", "nuts_sd", "sd_ratio",
                        "overlap90", "r_hat", "ess_bulk"}  # fmt: skip
    assert row["vi_sd"] == pytest.approx(np.std(v, ddof=1), rel=1e-12)
    assert row["nuts_sd"] == pytest.approx(np.std(n, ddof=1), rel=1e-12)
    assert row["nuts_mean"] == pytest.approx(n.mean(), rel=1e-12)
    assert row["sd_ratio"] == pytest.approx(row["vi_sd"] / row["nuts_sd"], rel=1e-12)
    assert row["overlap90"] == pytest.approx(D.interval_overlap(v, n), rel=1e-12)
    assert row["r_hat"] == pytest.approx(float(arviz().rhat(result.nuts)["z"].values[0]), rel=1e-12)
    bulk = float(arviz().ess(result.nuts, method="bulk")["z"].values[0])
    assert row["ess_bulk"] == pytest.approx(bulk, rel=1e-12)
    assert bulk != pytest.approx(float(arviz().ess(result.nuts, method="tail")["z"].values[0]))


def _two_latents(y, *, scale):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    nu = pyro.sample("nu", dist.Normal(0.0, 1.0))
    with pyro.plate("d", y.shape[0]):
        pyro.sample("y", dist.Normal(mu + nu, scale), obs=y)


def _two_latents_guide(y, *, scale):
    pyro.sample("mu", dist.Normal(0.5, 0.1))
    pyro.sample("nu", dist.Normal(-0.5, 0.2))


def test_inference_data_defaults_keyword_arguments_and_sites():
    """to_inference_data: 1,000 draws and seed 0 by default, keyword arguments passed to the
    model and guide, only the sites asked for, the ELBO history indexed by step."""
    y = torch.tensor([0.1, -0.2, 0.3])
    idata = D.to_inference_data(_two_latents, _two_latents_guide, y, scale=0.5, sites=["mu"],
                                elbo_history=[-3.0, -2.0, -1.5])  # fmt: skip
    assert list(idata.posterior.data_vars) == ["mu"]
    assert idata.posterior["mu"].shape == (1, 1000)
    assert list(idata.vi_elbo.coords["step"].values) == [0, 1, 2]
    again = D.to_inference_data(_two_latents, _two_latents_guide, y, scale=0.5, sites=["mu"],
                                seed=0)  # fmt: skip
    np.testing.assert_array_equal(idata.posterior["mu"].values, again.posterior["mu"].values)


def test_the_elbo_history_is_indexed_by_step():
    """vi_elbo holds one dimension, step, with an index 0..T-1: a user selects an SVI step by
    its number (``.sel(step=2)``), which a dimension without coordinates refuses."""
    y = torch.tensor([0.1, -0.2, 0.3])
    idata = D.to_inference_data(_two_latents, _two_latents_guide, y, scale=0.5, sites=["mu"],
                                num_samples=10, elbo_history=[-3.0, -2.0, -1.5])  # fmt: skip
    assert dict(idata.vi_elbo.sizes) == {"step": 3} and list(idata.vi_elbo.coords) == ["step"]
    assert idata.vi_elbo["elbo"].sel(step=2).item() == -1.5


class _StopBeforeSampling(Exception):
    pass


def test_compare_with_nuts_hands_its_settings_to_pyros_nuts_and_mcmc(monkeypatch):
    """Spies in place of Pyro's NUTS and MCMC record what compare_with_nuts asks for, and stop
    it before any sampling: by default 300 warm-up steps (Pyro's own default is num_samples),
    1 plate, Pyro's init_to_sample, seed 0 and no progress bar; and each setting given is the
    one used (the test's values differ from every default)."""
    from pyro.infer.autoguide.initialization import init_to_sample

    seen = {}

    class NUTS:
        def __init__(self, model, **options):
            seen["nuts"] = options

    class MCMC:
        def __init__(self, kernel, **options):
            seen["mcmc"], seen["seed"] = options, torch.initial_seed()

        def run(self, *args, **kwargs):
            seen["run"] = (args, kwargs)
            raise _StopBeforeSampling

    monkeypatch.setattr(pyro.infer, "NUTS", NUTS)
    monkeypatch.setattr(pyro.infer, "MCMC", MCMC)
    vi = arviz().from_dict(posterior={"mu": np.zeros((1, 4))})
    with pytest.raises(_StopBeforeSampling):
        D.compare_with_nuts(_two_latents, vi, torch.zeros(3), scale=0.5)
    assert seen["nuts"] == {"max_plate_nesting": 1, "init_strategy": init_to_sample}
    assert seen["mcmc"] == {"num_samples": 300, "warmup_steps": 300, "disable_progbar": True}
    assert seen["seed"] == 0 and seen["run"][1] == {"scale": 0.5}  # the model's arguments
    with pytest.raises(_StopBeforeSampling):
        D.compare_with_nuts(_two_latents, vi, torch.zeros(3), scale=0.5, num_samples=7,
                            warmup_steps=11, max_plate_nesting=3, seed=5, progress=True,
                            init_values={"mu": torch.tensor(0.25)})  # fmt: skip
    assert seen["mcmc"] == {"num_samples": 7, "warmup_steps": 11, "disable_progbar": False}
    assert seen["nuts"]["max_plate_nesting"] == 3 and seen["seed"] == 5
    site = {"name": "mu", "fn": dist.Normal(0.0, 1.0), "is_observed": False, "value": None,
            "infer": {}}  # fmt: skip
    assert seen["nuts"]["init_strategy"](site).item() == 0.25


def _expgauss_vi():
    x, theta = torch.tensor([1.0]), torch.tensor(2.0)
    guide = ExpGaussGuide(torch.tensor([2.0]))
    return x, theta, D.to_inference_data(expgauss_model.model, guide, x, theta, num_samples=500)


def test_nuts_that_fails_its_own_checks_warns_naming_the_parameter():
    """Ten draws per chain cannot reach a bulk ESS of 400: the comparison still returns, with one
    NutsConvergenceWarning that names the worst parameter and what to do."""
    x, theta, vi = _expgauss_vi()
    with pytest.warns(D.NutsConvergenceWarning, match=r"bulk ESS \d+ < 400 for z\[0\].*more"):
        result = D.compare_with_nuts(expgauss_model.model, vi, x, theta, num_samples=10,
                                     warmup_steps=10)  # fmt: skip
    assert result.rows[0]["ess_bulk"] < 400


def test_a_converged_nuts_run_does_not_warn():
    """On the one-dimensional exponential-Gaussian posterior, 2 chains of 1,500 draws pass both
    checks (r-hat <= 1.01, bulk ESS >= 400), and nothing is said."""
    import warnings

    x, theta, vi = _expgauss_vi()
    with warnings.catch_warnings():
        warnings.simplefilter("error", D.NutsConvergenceWarning)
        result = D.compare_with_nuts(expgauss_model.model, vi, x, theta, num_samples=1500,
                                     warmup_steps=300)  # fmt: skip
    row = result.rows[0]
    assert row["r_hat"] <= 1.01 and row["ess_bulk"] >= 400
