"""Test beds for gradient-variance measurements: one model, guide, data and two reference points.

Each :class:`Case` holds a model and guide ready to call on ``args``/``kwargs``, the estimators
that make sense for it, and two named parameter settings to measure at: a *start* (where SVI
begins) and an *optimum* (the exact posterior, the closed-form optimum, the CAVI optimum, or a
trained VAE). ``case.move_to(point)`` sets the guide (and model) parameters in place.

- ``conjugate``: 2-D Gaussian latent, 10 observations, full-rank Gaussian guide; the optimum is
  the exact posterior, where STL's gradient variance is exactly zero.
- ``expgauss``: x = 1, theta (model) and phi (guide) learned; the optimum is (2/x, 2/x). The
  exponential family does not contain the posterior, so STL's variance does not vanish there.
- ``earthquake``: 300 simulated events, K = 3; Z summed out (``enum``, ``stl`` on enum) or
  sampled (``trace``, score function); the optimum is CAVI's.
- ``vae``: one minibatch of round-binarised MNIST (``--data-dir``) and the source's
  architecture (or smaller); the optimum is the network after ``train_steps`` Trace_ELBO steps
  on that batch (trained inside :func:`build_case`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch

from analytic import conjugate
from analytic.earthquake import Hyperparameters, cavi, initial_mean_field
from guides.conjugate import GaussianGuide
from guides.earthquake import EarthquakeGuide
from guides.expgauss import ExpGaussGuide
from guides.vae import VAEGuide
from inference.estimators import get_elbo
from inference.svi import fit_svi
from ppl_models import conjugate as conjugate_model
from ppl_models import earthquake as earthquake_model
from ppl_models.expgauss import ExpGaussModel
from ppl_models.vae import VAEModel
from vilab.gradvar.flags import CASES

__all__ = ["ESTIMATORS_FOR", "TRAIN_ESTIMATOR", "Case", "build_case"]

# the estimators each case supports, and the one that trains it by default
ESTIMATORS_FOR = {
    "conjugate": ("trace", "meanfield", "stl"),
    "expgauss": ("trace", "meanfield", "stl"),
    "earthquake": ("trace", "enum", "stl"),
    "vae": ("trace", "meanfield", "stl"),
}
# STL for the conjugate model: at a constant learning rate it lands on the exact posterior,
# where the picture of Roeder et al. is clearest (every other estimator's variance stays).
TRAIN_ESTIMATOR = {"conjugate": "stl", "expgauss": "trace", "earthquake": "enum", "vae": "trace"}


class Case(NamedTuple):
    """A model/guide pair with its data, estimators and two reference points.

    Attributes:
        name: one of :data:`CASES`.
        model, guide: Pyro programs (``nn.Module`` where they hold parameters).
        args, kwargs: the model's arguments.
        estimators: name -> factory ``(num_particles, jit=False) -> pyro.infer.ELBO``.
        guides: name -> the guide to use with that estimator (shares the parameters of
            ``guide``; differs only for the earthquake ``trace``, which samples Z).
        points: ``{"start": state_dict, "optimum": state_dict}`` of the modules' parameters.
        lr, lr_final, steps: a schedule that trains this case from its start (the learning
            rate decays geometrically from lr to lr_final over the steps).
    """

    name: str
    model: Callable
    guide: torch.nn.Module
    args: tuple
    kwargs: dict
    estimators: dict[str, Callable[..., pyro.infer.ELBO]]
    guides: dict[str, torch.nn.Module]
    points: dict[str, dict]
    lr: float
    lr_final: float
    steps: int

    def modules(self) -> torch.nn.ModuleDict:
        parts = {"guide": self.guide}
        if isinstance(self.model, torch.nn.Module):
            parts["model"] = self.model
        return torch.nn.ModuleDict(parts)

    def move_to(self, point: str) -> None:
        """Load the parameters of ``point`` ("start" or "optimum") into the modules in place."""
        with torch.no_grad():
            self.modules().load_state_dict(self.points[point])

    def elbo(self, name: str, num_particles: int = 1, jit: bool | str = False) -> pyro.infer.ELBO:
        """The estimator ``name`` with ``num_particles`` (vectorised); ``jit`` compiles it."""
        return self.estimators[name](num_particles, jit)


def _snapshot(modules: torch.nn.ModuleDict) -> dict:
    return {k: v.detach().clone() for k, v in modules.state_dict().items()}


def _factories(names: dict[str, dict]) -> dict[str, Callable[..., pyro.infer.ELBO]]:
    def factory(name, extra):
        def make(num_particles: int, jit: bool | str = False) -> pyro.infer.ELBO:
            return get_elbo(
                name,
                jit=jit,
                num_particles=num_particles,
                vectorize_particles=num_particles > 1,
                max_plate_nesting=1,
                **extra,
            )

        return make

    return {name: factory(name, extra) for name, extra in names.items()}


def _conjugate(seed: int, **_) -> Case:
    prior = torch.tensor([[1.0, 0.0], [0.8, 0.6]], dtype=torch.float64)
    x, _ = conjugate_model.simulate(prior, 0.5, 10, seed=seed)
    args = (x, prior, 0.5)
    guide = GaussianGuide(torch.tensor([3.0, -3.0], dtype=torch.float64), torch.eye(2).double())
    modules = torch.nn.ModuleDict({"guide": guide})
    start = _snapshot(modules)
    loc, scale_tril = conjugate.posterior(*args)
    optimum = _snapshot(torch.nn.ModuleDict({"guide": GaussianGuide(loc, scale_tril)}))
    estimators = _factories({"trace": {}, "meanfield": {}, "stl": {}})
    guides = dict.fromkeys(estimators, guide)
    points = {"start": start, "optimum": optimum}
    return Case(
        name="conjugate", model=conjugate_model.model, guide=guide, args=args, kwargs={},
        estimators=estimators, guides=guides, points=points, lr=0.05, lr_final=0.05, steps=1500,
    )  # fmt: skip


def _expgauss(seed: int, **_) -> Case:
    x = torch.tensor([1.0], dtype=torch.float64)
    model, guide = ExpGaussModel(0.1, torch.float64), ExpGaussGuide(torch.tensor([20.0]).double())
    modules = torch.nn.ModuleDict({"guide": guide, "model": model})
    start = _snapshot(modules)
    optimum = _snapshot(
        torch.nn.ModuleDict(
            {
                "guide": ExpGaussGuide(torch.tensor([2.0]).double()),
                "model": ExpGaussModel(2.0, torch.float64),
            }
        )
    )
    estimators = _factories({"trace": {}, "meanfield": {}, "stl": {}})
    guides = dict.fromkeys(estimators, guide)
    return Case(
        name="expgauss", model=model, guide=guide, args=(x,), kwargs={}, estimators=estimators,
        guides=guides, points={"start": start, "optimum": optimum}, lr=0.1, lr_final=1e-3,
        steps=1000,
    )  # fmt: skip


def _earthquake(seed: int, **_) -> Case:
    hp = Hyperparameters(3, tau=1.0, rho=0.01, alpha=5.0, beta=0.5)
    X, S, *_ = earthquake_model.simulate(hp, 300, seed=seed, dtype=torch.float64)
    init = initial_mean_field(X, S, hp, torch.Generator().manual_seed(seed))
    guide = EarthquakeGuide.for_svi(init, hp, enumerate=True)
    sampled = copy.copy(guide)  # shares the parameters; samples Z instead of enumerating it
    sampled.enumerate = False
    modules = torch.nn.ModuleDict({"guide": guide})
    start = _snapshot(modules)
    best = cavi(X, S, hp, seed=seed).q
    optimum = _snapshot(torch.nn.ModuleDict({"guide": EarthquakeGuide.for_svi(best, hp)}))
    estimators = _factories({"trace": {}, "enum": {}, "stl": {"base": "enum"}})
    guides = {"trace": sampled, "enum": guide, "stl": guide}
    return Case(
        name="earthquake", model=earthquake_model.model, guide=guide, args=(X, S, hp), kwargs={},
        estimators=estimators, guides=guides, points={"start": start, "optimum": optimum},
        lr=0.1, lr_final=0.01, steps=500,
    )  # fmt: skip


def _vae(
    seed: int,
    *,
    images: torch.Tensor | None = None,
    latent_dim: int = 200,
    hidden_dim: int = 400,
    train_steps: int = 300,
    progress: bool = False,
    **_,
) -> Case:
    if images is None:
        raise ValueError("the vae case needs a minibatch of binary images (--data-dir)")
    torch.manual_seed(seed)
    D = images.shape[1]
    model, guide = VAEModel(D, latent_dim, hidden_dim), VAEGuide(D, latent_dim, hidden_dim)
    model, guide = model.to(images), guide.to(images)
    modules = torch.nn.ModuleDict({"guide": guide, "model": model})
    start = _snapshot(modules)
    estimators = _factories({"trace": {}, "meanfield": {}, "stl": {}})
    fit_svi(model, guide, estimators["trace"](1), images, num_steps=train_steps, lr=1e-3,
            seed=seed, progress=progress)  # fmt: skip
    optimum = _snapshot(modules)
    case = Case(
        name="vae", model=model, guide=guide, args=(images,), kwargs={}, estimators=estimators,
        guides=dict.fromkeys(estimators, guide), points={"start": start, "optimum": optimum},
        lr=1e-3, lr_final=1e-3, steps=train_steps,
    )  # fmt: skip
    case.move_to("start")
    return case


_BUILDERS = {"conjugate": _conjugate, "expgauss": _expgauss, "earthquake": _earthquake, "vae": _vae}


def build_case(name: str, seed: int = 0, **options) -> Case:
    """The test bed ``name`` (one of :data:`CASES`), its modules at the "start" point.

    Options (``vae`` only): ``images`` (B, D) binary minibatch, ``latent_dim``, ``hidden_dim``,
    ``train_steps`` (Trace_ELBO steps that define the "optimum"), ``progress``.
    """
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"model must be one of {list(CASES)}, got {name!r}") from None
    return builder(seed, **options)
