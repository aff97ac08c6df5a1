"""Data-parallel SVI: the scaling that makes the ranks' average gradient the full-data gradient
(checked in one process, shard by shard), and DistributedDataParallel in real processes on gloo
with Pyro's AutoNormal on a model we did not write (``ddp_user_script.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import config_enumerate
from pyro.infer.autoguide import AutoNormal

from analytic.earthquake import Hyperparameters, initial_mean_field
from guides.earthquake import EarthquakeGuide, GlobalsGuide
from inference.estimators import get_elbo
from inference.svi import SVIStep
from ppl_models.earthquake import MAX_PLATE_NESTING, model, simulate

# alpha, beta away from 1 so that no prior term vanishes; unequal shards (120 and 80 events)
HP = Hyperparameters(3, tau=0.02, rho=1e-3, alpha=1.5, beta=0.2)
SCRIPT = Path(__file__).with_name("ddp_user_script.py")


@pytest.fixture(scope="module")
def catalog():
    X, S, *_ = simulate(HP, 200, seed=1)
    return X, S


def _loss_and_grad(elbo, model_fn, guide, *args, **kwargs):
    """The loss and its gradient (flat) at seed 3: the same draws of the globals every call."""
    pyro.set_rng_seed(3)
    loss = elbo(model_fn, guide)(*args, **kwargs)
    grads = torch.autograd.grad(loss, [p for p in guide.parameters()])
    return loss.detach(), torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("estimator", ["enum", "stl"])
def test_shard_gradients_average_to_the_full_gradient(catalog, estimator):
    """Each of P = 2 ranks scales its events by P (``likelihood_scale``); DDP averages: the mean
    of the shards' losses and gradients equals the whole catalog's (Z summed out in the model,
    the globals' guide), to float64 rounding (1e-12 relative; measured 3e-16). Without the
    scale the mean would weigh the events by 1/2 and miss by about half the gradient."""
    X, S = catalog
    init = initial_mean_field(X, S, HP, torch.Generator().manual_seed(0))
    guide = GlobalsGuide.for_svi(init, HP)
    elbo = get_elbo(estimator, max_plate_nesting=MAX_PLATE_NESTING,
                    **({"base": "enum"} if estimator == "stl" else {}))  # fmt: skip
    enumerated = config_enumerate(model)
    full_loss, full_grad = _loss_and_grad(elbo, enumerated, guide, X, S, HP)
    parts = [_loss_and_grad(elbo, enumerated, guide, X[a:b], S[a:b], HP, likelihood_scale=2.0)
             for a, b in ((0, 120), (120, 200))]  # fmt: skip
    mean_loss = (parts[0][0] + parts[1][0]) / 2
    mean_grad = (parts[0][1] + parts[1][1]) / 2
    assert mean_loss.item() == pytest.approx(full_loss.item(), rel=1e-12)
    assert torch.allclose(mean_grad, full_grad, rtol=1e-12, atol=1e-12 * full_grad.abs().max())


def test_mean_field_guide_weighs_its_z_as_the_model_does(catalog):
    """The mean-field guide with Z in the guide: its log q(z) must carry the model's
    ``likelihood_scale`` too, or E[log p(z) - log q(z)] is weighed P : 1 and the shards' mean
    misses the full ELBO by (P - 1)/P of the entropy of q(Z) -- here hundreds of nats."""
    X, S = catalog
    q = initial_mean_field(X, S, HP, torch.Generator().manual_seed(0))
    q = q._replace(probs=torch.softmax(torch.randn(200, 3, dtype=torch.float64), -1))
    elbo = get_elbo("enum", max_plate_nesting=MAX_PLATE_NESTING)
    full_loss, _ = _loss_and_grad(elbo, model, EarthquakeGuide(q), X, S, HP)
    losses = [_loss_and_grad(elbo, model, EarthquakeGuide(q._replace(probs=q.probs[a:b])),
                             X[a:b], S[a:b], HP, likelihood_scale=2.0)[0]
              for a, b in ((0, 120), (120, 200))]  # fmt: skip
    assert ((losses[0] + losses[1]) / 2).item() == pytest.approx(full_loss.item(), rel=1e-12)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), "2"])
def test_a_bad_likelihood_scale_is_named(catalog, value):
    X, S = catalog
    with pytest.raises(ValueError, match="likelihood_scale"):
        model(X, S, HP, likelihood_scale=value)


def test_an_uncalled_autoguide_is_refused_with_the_fix():
    guide = AutoNormal(lambda: pyro.sample("a", pyro.distributions.Normal(0.0, 1.0)))
    with pytest.raises(ValueError, match=r"call guide\(\*args, \*\*kwargs\) once"):
        SVIStep(lambda: None, guide, get_elbo("trace"), lr=0.1)


def _launch(tmp_path, nproc: int, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", str(SCRIPT), *argv]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_autoguide_on_two_processes_takes_one_process_steps(tmp_path):
    """Pyro's AutoNormal (sigma ~ Uniform(0, 10): a constrained latent) on two processes, each
    with half the rows and the same seed: DDP's average of the gradients is the full data's, so
    the 60 Adam steps and the ELBO history equal one process's to rounding (1e-10 relative;
    measured 3e-16)."""
    out = {}
    for nproc in (1, 2):
        run = _launch(tmp_path, nproc, f"{nproc}.json")
        assert run.returncode == 0, run.stderr
        out[nproc] = json.loads((tmp_path / f"{nproc}.json").read_text())
    assert out[2]["elbo"] == pytest.approx(out[1]["elbo"], rel=1e-10)
    for name, value in out[1]["median"].items():
        assert out[2]["median"][name] == pytest.approx(value, rel=1e-10)
    # and the fit went somewhere: the tutorial's data were drawn with a = 1.5, sigma = 0.8
    assert out[1]["median"]["a"] == pytest.approx(1.5, abs=0.2)


def test_a_nan_on_one_rank_stops_every_rank_at_once(tmp_path):
    """Rank 1's data hold a NaN: both ranks see the mean loss, so both raise at step 0; a rank
    that went on to backward would wait in the gradient all-reduce (10 minutes' timeout)."""
    start = time.perf_counter()
    run = _launch(tmp_path, 2, "nan.json", "--nan-on-rank", "1")
    assert time.perf_counter() - start < 60
    assert run.returncode != 0
    assert run.stderr.count("SVI loss became nan at step 0") == 2
    assert not (tmp_path / "nan.json").exists()
