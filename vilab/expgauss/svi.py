"""SVI for the exponential-Gaussian model: learn theta (model) and phi (guide) together.

One call of :func:`fit_expgauss` runs :func:`inference.svi.fit_svi` on
:class:`ppl_models.expgauss.ExpGaussModel` and :class:`guides.expgauss.ExpGaussGuide` and
records the path (theta_t, phi_t) at every step, so it can be drawn on the closed-form ELBO
surface and scored by :func:`analytic.expgauss.elbo`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from guides.expgauss import ExpGaussGuide
from inference.estimators import get_elbo
from inference.svi import fit_svi
from ppl_models.expgauss import MAX_PLATE_NESTING, ExpGaussModel

__all__ = ["ExpGaussFit", "fit_expgauss"]


class ExpGaussFit(NamedTuple):
    """Result of :func:`fit_expgauss`.

    Attributes:
        theta: 0-dim, the learned prior rate. phi: (N,), the learned rates of q.
        path_theta: (num_steps + 1,) theta before the first step and after each step.
        path_phi: (num_steps + 1, N) phi likewise.
        elbo_history: (num_steps,) SVI's Monte Carlo ELBO estimate at each step.
        seconds: wall-clock time of the SVI loop. compile_seconds: of which compiling the loss
            took (0 with ``jit=False``).
    """

    theta: torch.Tensor
    phi: torch.Tensor
    path_theta: torch.Tensor
    path_phi: torch.Tensor
    elbo_history: torch.Tensor
    seconds: float
    compile_seconds: float = 0.0


def fit_expgauss(
    x: torch.Tensor,
    estimator: str = "trace",
    *,
    init_theta: float = 0.1,
    init_phi: float = 20.0,
    num_steps: int = 2000,
    num_particles: int = 256,
    lr: float = 0.1,
    lr_final: float | None = 3e-4,
    seed: int | None = 0,
    progress: bool = False,
    jit: bool | str = True,
) -> ExpGaussFit:
    """Maximise sum_n ELBO(x_n; theta, phi_n) over theta and phi by SVI.

    Defaults (measured on x = 1 from theta = 0.1, phi = 20, five seeds): 256 vectorised
    particles and a learning rate decaying from 0.1 to 3e-4 over 2000 steps end within 0.3% of
    the closed-form optimum (2, 2) with either estimator; one particle ends up to 8% away,
    because the ELBO is flat along theta = phi (Hessian eigenvalues -2.3 and -0.22 in log
    coordinates) and the gradient noise has variance ~1 there.

    Args:
        x: (N,) observations, on the device to fit on.
        estimator: a name from :func:`inference.estimators.get_elbo` (``trace``, ``meanfield``,
            ``stl``).
        init_theta, init_phi: the start (phi is the same for every observation), > 0.
        num_steps, num_particles, lr, lr_final, seed, progress: as in
            :func:`inference.svi.fit_svi`; particles are vectorised.
        jit: compile the loss (:func:`inference.estimators.get_elbo`'s ``jit``: True or a
            backend name; the same path at the same seed, about 3x faster steps with 256
            particles).

    Returns:
        :class:`ExpGaussFit`, tensors on the CPU.
    """
    for name, value in (("num_steps", num_steps), ("num_particles", num_particles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    model = ExpGaussModel(init_theta, dtype=x.dtype).to(x.device)
    guide = ExpGaussGuide(torch.full_like(x, float(init_phi)))
    loss = get_elbo(
        estimator,
        jit=jit,
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )
    path_theta = torch.empty(num_steps + 1, dtype=x.dtype)
    path_phi = torch.empty(num_steps + 1, x.shape[0], dtype=x.dtype)
    path_theta[0], path_phi[0] = model.theta.detach().cpu(), guide.phi.detach().cpu()

    def record(step, guide_):
        path_theta[step + 1] = model.theta.detach().cpu()
        path_phi[step + 1] = guide_.phi.detach().cpu()

    result = fit_svi(
        model,
        guide,
        loss,
        x,
        num_steps=num_steps,
        lr=lr,
        lr_final=lr_final,
        seed=seed,
        progress=progress,
        callback=record,
        callback_every=1,
    )
    return ExpGaussFit(
        path_theta[-1].clone(),
        path_phi[-1].clone(),
        path_theta,
        path_phi,
        result.elbo_history,
        result.seconds,
        result.compile_seconds,
    )
