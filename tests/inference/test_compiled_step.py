"""The whole SVI step compiled as one call (get_elbo(name, jit="step") in SVIStep / fit_svi):
the same losses and parameters as the eager step (loss, backward, torch's fused Adam) at the
same seed, on our models, on Pyro's autoguides, and the eager step with one warning wherever
the compiled one cannot be trusted.

Tolerance: float64; the compiled step runs the same random ops on the same draws and the same
Adam formula, so the runs differ only by rounding in another evaluation order, which 100
steps of Adam carry along without amplifying (measured <= 1e-13 relative on the earthquake
parameters, <= 5e-15 on the losses). 1e-9 leaves four orders of magnitude of room, while a
frozen draw, a stale learning rate or a missed bias correction is off by 1e-3 or more.
"""

from __future__ import annotations

import re
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

import inference.jit.inductor
from analytic.earthquake import Hyperparameters, initial_mean_field
from guides.earthquake import EarthquakeGuide
from guides.expgauss import ExpGaussGuide
from guides.vae import VAEGuide
from inference.estimators import get_elbo
from inference.jit.step import CompiledStep, optimizer_refusal
from inference.svi import SVIStep, adam, fit_svi
from ppl_models import earthquake as earthquake_model
from ppl_models.expgauss import ExpGaussModel
from ppl_models.vae import VAEModel

RTOL = 1e-9
# (the example of docs/guides/compiled-svi.md compiles the same step -- model, sizes, dtype and
# these constants -- so that one of the two finds it in Inductor's cache)
HP = Hyperparameters(num_clusters=3, mixing=(0.5, 0.3, 0.2), tau=0.05, rho=0.02, alpha=1.5)


def _earthquake(estimator: str, jit, steps: int, **options):
    """``steps`` of fit_svi on 150 simulated events with a decaying learning rate: (history,
    parameters after, the ELBO object, the guide)."""
    X, S, *_ = earthquake_model.simulate(HP, 150, seed=3)
    init = initial_mean_field(X, S, HP, torch.Generator().manual_seed(0))
    guide = EarthquakeGuide.for_svi(init, HP, enumerate=options.get("base", estimator) != "trace")
    elbo = get_elbo(estimator, jit=jit, max_plate_nesting=1, **options)
    fit = fit_svi(earthquake_model.model, guide, elbo, X, S, HP, num_steps=steps, lr=0.05,
                  lr_final=0.005, seed=7, progress=False)  # fmt: skip
    return fit.elbo_history, [p.detach().clone() for p in guide.parameters()], elbo, guide


def _assert_same_runs(eager, compiled, rtol: float = RTOL) -> None:
    torch.testing.assert_close(compiled[0], eager[0], rtol=rtol, atol=0)
    for a, b in zip(compiled[1], eager[1], strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item())


def test_whole_step_equals_the_eager_steps_and_keeps_parameters_on_a_nan_loss():
    """100 steps of the earthquake mixture (enum), learning rate decaying geometrically (so
    the learning-rate input must follow the schedule): the ELBO history and every parameter
    equal the eager run's to 1e-9. Then a catalog of the same shape with a NaN: the compiled
    call raises FloatingPointError and leaves parameters and Adam's state untouched. The one
    Inductor compile of the default suite (10-20 s cold, about 3 s from Inductor's cache)."""
    eager = _earthquake("enum", False, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a step that falls back to eager would warn: fail
        compiled = _earthquake("enum", "step", 100)
    _assert_same_runs(eager, compiled)
    elbo, guide = compiled[2], compiled[3]
    assert elbo.uncompiled == {} and elbo.compile_seconds > 0

    X, S, *_ = earthquake_model.simulate(HP, 150, seed=3)
    X[5, 0] = float("nan")
    step = SVIStep(earthquake_model.model, guide, elbo, 0.05)
    step(X.nan_to_num(), S, HP)  # first call of this SVIStep: eager
    step(X.nan_to_num(), S, HP)  # second: compiled (the eager step is the reference)
    assert step.compiled._graphs, "the step was not compiled"
    before = [t.clone() for t in step.compiled._state()[0]]
    with pytest.raises(FloatingPointError, match="SVI loss became nan"):
        step(X, S, HP)
    for a, b in zip(step.compiled._state()[0], before, strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize(
    "estimator, options, rtol",
    [
        ("stl", {"base": "enum"}, 1e-6),
        ("trace", {}, RTOL),
        ("stl", {"base": "trace"}, RTOL),
        ("trace", {"num_particles": 3, "vectorize_particles": True}, RTOL),
    ],  # fmt: skip
)
def test_whole_step_equals_the_eager_steps_for_every_estimator(estimator, options, rtol):
    """As above for STL on both bases, the score-function Trace_ELBO (Z sampled: the
    downstream-cost term) and vectorised particles: 60 steps, 1e-9. STL on the enumerated Z
    is held to 1e-6 (measured 2.5e-7 on the logits of q(Z), 7e-10 on the losses): its logit
    gradients are differences of nearly equal terms, known to ~1e-16 of the largest gradient
    only, and Adam divides each coordinate by its own RMS, so a coordinate 1e-8 the size of
    the largest one carries its rounding into the step at 1e-8 relative; the Inductor *loss*
    backend, with no optimiser compiled, differs from eager by the same 7e-7 here."""
    eager = _earthquake(estimator, False, 60, **options)
    compiled = _earthquake(estimator, "step", 60, **options)
    _assert_same_runs(eager, compiled, rtol)
    assert compiled[2].uncompiled == {}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["trace", "meanfield", "stl"])
def test_whole_step_expgauss_with_256_vectorised_particles(estimator):
    """The exponential-Gaussian model with theta learned beside phi (a model parameter in the
    step), 256 vectorised particles, 50 steps."""
    x = torch.tensor([0.4, 1.3, 2.2], dtype=torch.float64)
    runs = []
    for jit in (False, "step"):
        model = ExpGaussModel(0.1).double()
        guide = ExpGaussGuide(torch.full_like(x, 20.0))
        elbo = get_elbo(estimator, jit=jit, num_particles=256, vectorize_particles=True,
                        max_plate_nesting=1)  # fmt: skip
        fit = fit_svi(model, guide, elbo, x, num_steps=50, lr=0.01, seed=2, progress=False)
        params = [p.detach().clone() for p in (*model.parameters(), *guide.parameters())]
        runs.append((fit.elbo_history, params))
    _assert_same_runs(*runs)


def _constrained_model(y):
    """A model we did not write for this: a positive scale (LogNormal prior) and a mean."""
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 0.7))
    mu = pyro.sample("mu", dist.Normal(1.5, 2.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


@pytest.mark.slow
@pytest.mark.parametrize("autoguide", [AutoNormal, AutoMultivariateNormal])
@pytest.mark.parametrize("estimator", ["trace", "stl"])
def test_whole_step_with_pyro_autoguides(autoguide, estimator):
    """Pyro's autoguides (parameters in the param store, constrained latents) stepped by
    SVIStep the way a user steps pyro.infer.SVI: 30 steps, losses and the param store equal."""
    y = torch.tensor([0.3, 2.9, 1.1, 4.0, 2.2], dtype=torch.float64)
    runs = []
    for jit in (False, "step"):
        pyro.clear_param_store()
        pyro.set_rng_seed(11)
        guide = autoguide(_constrained_model)
        guide(y)  # an autoguide makes its parameters at its first call
        step = SVIStep(_constrained_model, guide, get_elbo(estimator, jit=jit), 0.05)
        losses = torch.tensor([step(y) for _ in range(30)])
        store = [v.detach().clone() for _, v in sorted(pyro.get_param_store().items())]
        runs.append((losses, store))
    _assert_same_runs(*runs)
    assert step.compiled._graphs
    pyro.clear_param_store()


@pytest.mark.slow
def test_whole_step_vae_takes_new_minibatches():
    """The VAE: a different minibatch of the same shape at every step (data frozen into the
    graph would show), encoder and decoder networks, 6 steps."""
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.rand(8, 12, generator=gen, dtype=torch.float64) > 0.5).double()
               for _ in range(6)]  # fmt: skip
    runs = []
    for jit in (False, "step"):
        torch.manual_seed(0)
        model = VAEModel(12, 3, 10, 1).double()
        guide = VAEGuide(12, 3, 10, 1).double()
        step = SVIStep(model, guide, get_elbo("meanfield", jit=jit, max_plate_nesting=1), 1e-2)
        pyro.set_rng_seed(5)
        losses = torch.tensor([step(x, 100) for x in batches])
        runs.append((losses, [p.detach().clone() for p in (*model.parameters(),
                                                           *guide.parameters())]))  # fmt: skip
    _assert_same_runs(*runs)


# -- refusals: none of these compiles anything ---------------------------------------------


class _OwnStep(torch.optim.Adam):
    """An Adam subclass with its own update: it must not pass as Adam."""

    def step(self, closure=None):
        return super().step(closure)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), "the optimiser is SGD, not torch.optim.Adam"),
        (lambda p: torch.optim.AdamW(p, lr=0.1), "Adam's weight_decay=0.01"),  # AdamW's default
        (lambda p: _OwnStep(p, lr=0.1), "the optimiser is _OwnStep, not torch.optim.Adam"),
        (lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True), "Adam's amsgrad=True"),
        (lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.01), "Adam's weight_decay=0.01"),
        (lambda p: torch.optim.Adam(p, lr=0.1, maximize=True), "Adam's maximize=True"),
        (lambda p: torch.optim.Adam(p, lr=torch.tensor(0.1)), "a tensor learning rate"),
    ],
)
def test_optimisers_the_compiled_step_does_not_reproduce_are_named(make, reason):
    """An optimiser whose update the graph would not reproduce is refused by name, not
    approximated (each would otherwise pass as Adam with the default options)."""
    assert reason in optimizer_refusal(make([torch.nn.Parameter(torch.zeros(2))]))
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert optimizer_refusal(torch.optim.Adam(p)) == optimizer_refusal(adam(p, 0.1)) == ""
    assert optimizer_refusal(torch.optim.AdamW(p, weight_decay=0.0)) == ""  # Adam's update


def test_a_refused_optimiser_steps_eagerly_with_one_warning():
    """CompiledStep with SGD: one warning naming the optimiser, then the eager step, whose
    values it returns unchanged."""
    elbo = get_elbo("meanfield", jit="step", max_plate_nesting=1)
    model, guide = ExpGaussModel(0.1).double(), ExpGaussGuide(torch.full((2,), 5.0))
    optimizer = torch.optim.SGD([*model.parameters(), *guide.parameters()], lr=1e-3)
    calls = []
    step = CompiledStep(elbo, optimizer, lambda *a: calls.append(a) or 1.5)
    x = torch.tensor([0.5, 1.0], dtype=torch.float64)
    with pytest.warns(UserWarning, match="not compiled whole: the optimiser is SGD") as caught:
        values = [step(model, guide, x) for _ in range(3)]
    assert values == [1.5] * 3 and len(calls) == 3 and len(caught) == 1


@pytest.mark.parametrize(
    "stand_in, reason",
    [
        (
            lambda fn, inputs: (_ for _ in ()).throw(RuntimeError("no C++ compiler")),
            "RuntimeError: no C++ compiler",
        ),  # fmt: skip
        (lambda fn, inputs: lambda *a: torch.tensor(0.0, dtype=torch.float64), "loss 0.0"),
        (lambda fn, inputs: lambda *a: fn(*a) * (1 + 1e-6), "loss"),
    ],
)
def test_a_compiler_failure_or_a_wrong_graph_keeps_the_eager_step(monkeypatch, stand_in, reason):
    """Where Inductor fails, or its graph disagrees with the eager reference (a wrong loss, or
    one off by 1e-6 relative), one warning says why and every step is the uncompiled one (the
    TorchScript-traced loss and torch's Adam): the run equals the eager run to 1e-9 (measured
    5e-16), and the graph is never used."""
    monkeypatch.setattr(inference.jit.inductor, "compile_step", stand_in)
    eager = _earthquake("enum", False, 8)
    with pytest.warns(UserWarning, match=re.escape(f"not compiled whole: {reason}")) as caught:
        compiled = _earthquake("enum", "step", 8)
    assert len([w for w in caught if "compiled whole" in str(w.message)]) == 1
    _assert_same_runs(eager, compiled)
    assert len(compiled[2].uncompiled) == 1


def test_get_elbo_names_the_step_backend():
    with pytest.raises(ValueError, match="jit must be True, False or one of 'torchscript', "
                       "'inductor', 'step', got 'whole'"):  # fmt: skip
        get_elbo("enum", jit="whole")
    assert get_elbo("enum", jit="step").backend == "step"
