r"""An energy-based density model in 2-D, trained by maximum likelihood with SNIS gradients.

Model (the "Final Homework" on generative models and EBMs, P. Wang 2021, part 1 Q4-Q6; Lawson,
Tucker, Dai & Ranganath 2019, "Energy-Inspired Models", Sec. 2)::

    p_theta(x) = exp(E_theta(x) - A(theta)),   A(theta) = log int exp(E_theta(x)) dx
    E_theta(x) = f_theta(u) - |u|^2 / (2 c^2),  u = (x - center) / scale

f_theta is an MLP with tanh hidden units, so it is bounded, and the fixed Gaussian term (sd c
in standardised units) makes exp(E) integrable whatever theta is: a bare ReLU MLP grows
linearly and can put unbounded mass where no data or proposal draw ever looks, and then no
estimate of A(theta) can be trusted.

Training maximises the mean log-likelihood L(theta) = (1/B) sum_b E_theta(x_b) - A(theta) on
minibatches, whose gradient is

    grad L = (1/B) sum_b grad E_theta(x_b) - E_{p_theta}[grad E_theta(x)]

with the second term by self-normalised importance sampling (:mod:`inference.density.snis`) from a
fixed proposal q, M fresh draws per step: sum_m w~_m grad E_theta(x_m), w~ = softmax(E - log
q) held constant. Autograd gives exactly this from the surrogate loss
``-(mean_b E(x_b) - sum_m w~_m.detach() E(x_m))`` -- one backward pass over the batch and the
draws, no loop over parameters (the source's per-parameter loop is why it stopped early). The
logged objective is the value mean_b E(x_b) - log Z^ (log Z^ from the same draws).

The proposal (:func:`defensive_mixture`) is a Gaussian mixture fitted to the data with each
component widened, plus a wide "defensive" component (Hesterberg 1995, "Weighted average
importance sampling and defensive mixture distributions"): its weights q(x) >= 0.1 x N(x;
center, (c scale)^2 I) bound w = exp(E)/q wherever the Gaussian term of E dominates. The ESS
of the weights is logged along training.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributions as td
from torch import nn
from tqdm.auto import tqdm

from analytic.quadrature2d import log_integral_2d
from inference.density.snis import LogNormaliser, log_normaliser

__all__ = [
    "EbmTraining",
    "EnergyMLP",
    "defensive_mixture",
    "importance_log_normaliser",
    "quadrature_log_normaliser",
    "snis_surrogate",
    "train_ebm",
]


class EnergyMLP(nn.Module):
    """E_theta(x) = f_theta((x - center) / scale) - |u|^2 / (2 base_sd^2): (N, 2) -> (N,).

    Args:
        center: (2,) and scale (> 0): standardise the inputs (the data's mean and spread);
            the network takes center's dtype.
        hidden: units per hidden layer; layers: hidden layers (tanh); base_sd: c > 0.
    """

    def __init__(self, center, scale: float, hidden: int = 64, layers: int = 2,
                 base_sd: float = 2.0):  # fmt: skip
        super().__init__()
        for name, value in (("hidden", hidden), ("layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, value in (("scale", scale), ("base_sd", base_sd)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        center = torch.as_tensor(center)
        if not center.is_floating_point():
            center = center.to(torch.get_default_dtype())
        if center.shape != (2,) or not bool(torch.isfinite(center).all()):
            raise ValueError(f"center must be 2 finite numbers, got {center.tolist()}")
        self.register_buffer("center", center)
        self.scale, self.base_sd = float(scale), float(base_sd)
        sizes = [2] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.Tanh()]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], 1)).to(center.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x - self.center) / self.scale
        return self.net(u).squeeze(-1) - u.square().sum(-1) / (2 * self.base_sd**2)


def defensive_mixture(
    means: torch.Tensor,
    weights: torch.Tensor,
    component_sd: float,
    wide_loc: torch.Tensor,
    wide_sd: float,
    defensive: float = 0.1,
) -> td.MixtureSameFamily:
    """q = (1 - defensive) sum_k pi_k N(mu_k, s^2 I) + defensive N(wide_loc, wide_sd^2 I).

    Args:
        means: (K, 2); weights: (K,) summing to 1; component_sd: s > 0 (widen the fitted
            components: heavier than the target near the data); wide_loc: (2,); wide_sd > 0;
            defensive: its weight, in (0, 1).
    """
    if not (0 < defensive < 1):
        raise ValueError(f"defensive must be in (0, 1), got {defensive!r}")
    for name, value in (("component_sd", component_sd), ("wide_sd", wide_sd)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    locs = torch.cat([means, torch.as_tensor(wide_loc).to(means).reshape(1, 2)])
    sds = torch.tensor([component_sd] * means.shape[0] + [wide_sd]).to(means)
    probs = torch.cat([(1 - defensive) * weights.to(means), means.new_tensor([defensive])])
    components = td.Independent(td.Normal(locs, sds[:, None].expand_as(locs)), 1)
    return td.MixtureSameFamily(td.Categorical(probs=probs), components)


class EbmTraining(NamedTuple):
    """Result of :func:`train_ebm`: per step, the objective (mean_b E - log Z^, an estimate of
    the minibatch's mean log-likelihood), the ESS of the proposal's weights as a fraction of
    M, and the learning rate used."""

    objective: list[float]
    ess_fraction: list[float]
    lr: list[float]


def snis_surrogate(
    energy: nn.Module, batch: torch.Tensor, draws: torch.Tensor, log_q: torch.Tensor
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """(loss, mean_b E(x_b), log weights (M,)): the loss -(mean_b E(x_b) - sum_m w~_m E(x_m))
    with w~ = softmax(E(x_m) - log q(x_m)) held constant, whose gradient is minus the SNIS
    estimate of grad L (module docstring). batch: (B, 2); draws: (M, 2) ~ q; log_q: (M,)."""
    e_draws = energy(draws)
    log_w = e_draws.detach() - log_q
    e_data = energy(batch).mean()
    loss = -(e_data - (torch.softmax(log_w, dim=0) * e_draws).sum())
    return loss, e_data.item(), log_w


def train_ebm(
    energy: EnergyMLP,
    data: torch.Tensor,
    proposal: td.Distribution,
    *,
    steps: int = 3000,
    batch_size: int = 256,
    num_draws: int = 1024,
    lr: float = 3e-3,
    schedule: str = "cosine",
    seed: int = 0,
    progress: bool = False,
) -> EbmTraining:
    """Adam on the SNIS surrogate (module docstring), ``steps`` minibatches of ``batch_size``
    data points (without replacement within an epoch) and ``num_draws`` fresh proposal draws
    each; ``schedule`` "cosine" (to 0 at the last step) or "constant". The global torch RNG is
    left as it was (its state is forked and seeded with ``seed``)."""
    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_draws", num_draws)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if num_draws < 2:
        raise ValueError(f"num_draws must be >= 2 for self-normalised weights, got {num_draws}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if data.dim() != 2 or data.shape[1] != 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (N, 2) with N >= 1, got {tuple(data.shape)}")
    optimiser = torch.optim.Adam(energy.parameters(), lr=lr)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
        if schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    )
    history = EbmTraining([], [], [])
    N = data.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        order, cursor = torch.randperm(N), 0
        for _ in tqdm(range(steps), desc="EBM (SNIS)", disable=not progress):
            if cursor + batch_size > N:
                order, cursor = torch.randperm(N), 0
            batch = data[order[cursor : cursor + batch_size]]
            cursor += batch_size
            with torch.no_grad():
                draws = proposal.sample((num_draws,))
                log_q = proposal.log_prob(draws)
            loss, e_data, log_w = snis_surrogate(energy, batch, draws, log_q)
            optimiser.zero_grad()
            loss.backward()
            history.lr.append(optimiser.param_groups[0]["lr"])
            optimiser.step()
            scheduler.step()
            estimate = log_normaliser(log_w)
            history.objective.append(e_data - estimate.value)
            history.ess_fraction.append(estimate.ess / num_draws)
    return history


def importance_log_normaliser(
    energy: EnergyMLP, proposal: td.Distribution, num_draws: int = 1 << 17, *, seed: int = 0
) -> LogNormaliser:
    """A(theta) by importance sampling from ``proposal``: log mean exp(E - log q) with its
    delta-method standard error and ESS (:func:`inference.density.snis.log_normaliser`)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        draws = proposal.sample((num_draws,))
        log_w = energy(draws) - proposal.log_prob(draws)
    return log_normaliser(log_w)


def quadrature_log_normaliser(
    energy: EnergyMLP, box: tuple[float, float, float, float], num_points: int = 801
) -> float:
    """A(theta) by Simpson's rule on ``box`` (:func:`analytic.quadrature2d.log_integral_2d`),
    an independent route to :func:`importance_log_normaliser`."""
    with torch.no_grad():
        return log_integral_2d(lambda x: energy(x.to(energy.center.dtype)), box, num_points)
