r"""Guides for :mod:`ppl_models.earthquake`: the mean field, and the globals alone.

::

    q = prod_n Cat(Z_n | r_n) prod_k N_2(mu_k | m_k, p_k^{-1} I) Gamma(lambda_k | a_k, b_k)

the family of :class:`analytic.earthquake.MeanField`. The guide is a plain :class:`torch.nn.Module`
whose parameters are unconstrained: logits of r (softmax gives r), m as is, and log p, log a,
log E[lambda] = log(a / b) (exp gives them back), so one ``torch.optim`` optimiser can own
them all. q(lambda_k) is stored as (log a_k, log E[lambda_k]) rather than (log a_k, log b_k):
the data pin E[lambda_k] sharply and a_k weakly, and in (log a, log b) that is a narrow
diagonal ridge, which Adam's per-coordinate steps follow badly; in (log a, log E[lambda]) the
two directions are the axes. Build it from a ``MeanField`` and read it back with
:meth:`EarthquakeGuide.mean_field`, so the closed-form ELBO can score an SVI solution.

``enumerate=True`` marks Z for parallel enumeration (use ``TraceEnum_ELBO``: the expectation
over Z is then exact); ``enumerate=False`` samples Z (``Trace_ELBO``; score-function gradient).

:class:`GlobalsGuide` is q(mu, lambda) alone, with the same parameters less the logits, for the
model with Z enumerated in the model: the guide of minibatch and data-parallel SVI, whose size
does not grow with N.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from analytic.earthquake import MeanField, check_mean_field

__all__ = ["SVI_LOGIT_SCALE", "EarthquakeGuide", "GlobalsGuide"]

# Logits in units of 10 nats: measured on 2,000 simulated events, SVI with this scale (and
# centres in units of one cluster width) reaches the CAVI ELBO within 0.3 nats in 500 steps,
# while unscaled centres and logits stall hundreds of nats below it.
SVI_LOGIT_SCALE = 10.0

# Responsibilities that are exactly zero would give logits of -inf; clamp to this floor.
_TINY = 1e-30


class GlobalsGuide(torch.nn.Module):
    r"""The guide of the globals alone, ``q(mu, lambda) = prod_k N_2(mu_k | m_k, p_k^{-1} I)
    Gamma(lambda_k | a_k, b_k)``, for the model with Z summed out in the *model*
    (``pyro.infer.config_enumerate(model)`` and ``TraceEnum_ELBO``).

    Its objective is then ``E_q[log p(x | mu, lambda)] - KL(q(mu, lambda) || p(mu, lambda))``
    with ``p(x_n | mu, lambda) = sum_k pi_k N(x_n | mu_k, tau^{-1} I) Poisson(s_n | lambda_k)``:
    q(Z) is, in effect, the exact conditional ``p(Z | x, mu, lambda)`` for every draw of the
    globals, a bound at least as tight as the mean-field ELBO at the same globals. Its
    parameters do not grow with N, so it is the guide of minibatch and data-parallel SVI
    (every rank holds the same few numbers while its events stay its own). Score it by the
    mean-field ELBO with ``q(Z)`` set optimal for its globals
    (:func:`analytic.earthquake.streamed.streamed_elbo`).

    Parameters (unconstrained, as in :class:`EarthquakeGuide`): ``scaled_loc = m / loc_scale``,
    ``log_precision``, ``log_concentration = log a``, ``log_mean_lam = log(a / b)``.

    Args:
        init: a :class:`MeanField` whose globals start the guide (its ``probs`` are not read
            and may be None); its dtype and device are kept.
        loc_scale: m is stored as ``m / loc_scale`` (see :class:`EarthquakeGuide`). Must be > 0.
    """

    def __init__(self, init: MeanField, loc_scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(init, MeanField):
            raise ValueError(f"init must be a MeanField, got {type(init).__name__}")
        K = init.loc.shape[0] if torch.is_tensor(init.loc) and init.loc.dim() == 2 else 0
        uniform = torch.full((1, K), 1.0 / max(K, 1), dtype=torch.float64)
        check_mean_field(init._replace(probs=uniform), 1, K)
        if not loc_scale > 0:
            raise ValueError(f"loc_scale must be > 0, got {loc_scale!r}")
        self.loc_scale = float(loc_scale)
        self.scaled_loc = torch.nn.Parameter(init.loc / self.loc_scale)
        self.log_precision = torch.nn.Parameter(torch.log(init.precision))
        self.log_concentration = torch.nn.Parameter(torch.log(init.concentration))
        self.log_mean_lam = torch.nn.Parameter(torch.log(init.concentration / init.rate))

    @classmethod
    def for_svi(cls, init: MeanField, hp) -> GlobalsGuide:
        """The guide with ``loc_scale = tau ** -0.5`` (one cluster width), as SVI needs."""
        return cls(init, loc_scale=hp.tau**-0.5)

    def _sample_globals(self, num_clusters: int) -> None:
        """The sites ``mu`` (K, 2) and ``lam`` (K,) in the plate "cluster"."""
        K = num_clusters
        # (a trace is compiled per shape, after an eager call has made this check)
        if not torch.jit.is_tracing() and self.scaled_loc.shape[0] != K:
            raise ValueError(
                f"guide was built for {self.scaled_loc.shape[0]} clusters, got num_clusters={K}"
            )
        scale = torch.exp(-0.5 * self.log_precision).unsqueeze(-1).expand(K, 2)
        with pyro.plate("cluster", K, dim=-1):
            pyro.sample("mu", dist.Normal(self.scaled_loc * self.loc_scale, scale).to_event(1))
            concentration = self.log_concentration.exp()
            rate = concentration * torch.exp(-self.log_mean_lam)
            pyro.sample("lam", dist.Gamma(concentration, rate))

    def forward(self, X, S, hp, subsample_size=None, likelihood_scale=1.0) -> None:
        self._sample_globals(hp.num_clusters)

    @torch.no_grad()
    def permute_clusters_(self, perm) -> None:
        """Relabel the clusters in place: the new cluster ``k`` is the old ``perm[k]`` (so a
        fit matched to another fit's labels draws its samples, and its diagnostics name its
        clusters, under those labels)."""
        perm = torch.as_tensor(perm, dtype=torch.long, device=self.scaled_loc.device)
        K = self.scaled_loc.shape[0]
        if sorted(perm.tolist()) != list(range(K)):
            raise ValueError(f"perm must be a permutation of 0..{K - 1}, got {perm.tolist()}")
        for name in ("scaled_loc", "log_precision", "log_concentration", "log_mean_lam"):
            getattr(self, name).copy_(getattr(self, name)[perm])

    def mean_field(self, *, differentiable: bool = False) -> MeanField:
        """The current globals as a :class:`MeanField` with ``probs`` None: detached by
        default; ``differentiable=True`` keeps the graph to the parameters."""
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            return MeanField(
                probs=None,
                loc=self.scaled_loc * self.loc_scale,
                precision=self.log_precision.exp(),
                concentration=self.log_concentration.exp(),
                rate=torch.exp(self.log_concentration - self.log_mean_lam),
            )


class EarthquakeGuide(GlobalsGuide):
    """Mean-field guide, callable with the model's signature ``(X, S, hp, subsample_size)``.

    Args:
        init: the starting :class:`MeanField` (e.g. ``analytic.earthquake.initial_mean_field``
            or a CAVI optimum); its dtype and device are kept.
        enumerate: enumerate Z in parallel (for TraceEnum_ELBO) instead of sampling it.
        loc_scale: m is stored as ``m / loc_scale``. Adam moves a parameter by about ``lr`` per
            step whatever its units, so with locations in degrees and clusters ~10 degrees wide,
            ``loc_scale = tau ** -0.5`` (one cluster width) lets the centres travel at the speed
            of the other parameters. Must be > 0.
        logit_scale: the logits of r are stored divided by this, for the same reason: at the
            optimum they differ by tens of nats, which Adam at ``lr = 0.1`` would take hundreds
            of steps to reach with ``logit_scale = 1``. Must be > 0.
    """

    def __init__(
        self,
        init: MeanField,
        enumerate: bool = True,
        loc_scale: float = 1.0,
        logit_scale: float = 1.0,
    ) -> None:
        N, K = init.probs.shape
        check_mean_field(init, N, K)
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale!r}")
        super().__init__(init, loc_scale)
        self.enumerate = enumerate
        self.logit_scale = float(logit_scale)
        self.scaled_logits = torch.nn.Parameter(
            torch.log(init.probs.clamp_min(_TINY)) / self.logit_scale
        )

    @classmethod
    def for_svi(cls, init: MeanField, hp, enumerate: bool = True) -> EarthquakeGuide:
        """The guide with the scales SVI needs: ``loc_scale = tau ** -0.5`` (one cluster width)
        and ``logit_scale = SVI_LOGIT_SCALE``."""
        return cls(init, enumerate=enumerate, loc_scale=hp.tau**-0.5, logit_scale=SVI_LOGIT_SCALE)

    def forward(self, X, S, hp, subsample_size=None, likelihood_scale=1.0) -> None:
        K = hp.num_clusters
        # (a trace is compiled per shape, after an eager call has made this check)
        if not torch.jit.is_tracing() and self.scaled_logits.shape != (X.shape[0], K):
            raise ValueError(
                f"guide was built for {tuple(self.scaled_logits.shape)} (events, clusters), "
                f"got data of {X.shape[0]} events and num_clusters={K}"
            )
        self._sample_globals(K)
        infer = {"enumerate": "parallel"} if self.enumerate else {}
        # the model's scale of the events, so that log q(z) is weighted as log p(z) is
        with (
            poutine.scale(scale=likelihood_scale),
            pyro.plate("events", X.shape[0], subsample_size=subsample_size, dim=-1) as idx,
        ):
            logits = self.scaled_logits[idx] * self.logit_scale
            pyro.sample("z", dist.Categorical(logits=logits), infer=infer)

    @torch.no_grad()
    def permute_clusters_(self, perm) -> None:
        """Relabel the clusters in place, the assignment logits' columns with them."""
        super().permute_clusters_(perm)
        perm = torch.as_tensor(perm, dtype=torch.long, device=self.scaled_logits.device)
        self.scaled_logits.copy_(self.scaled_logits[:, perm])

    def mean_field(self, *, differentiable: bool = False) -> MeanField:
        """The current parameters as a :class:`MeanField`: detached by default; with
        ``differentiable=True`` it keeps the graph to the guide's parameters (so that autograd
        of the closed-form ELBO gives the exact gradient w.r.t. them)."""
        q = super().mean_field(differentiable=differentiable)
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            return q._replace(probs=torch.softmax(self.scaled_logits * self.logit_scale, dim=-1))
