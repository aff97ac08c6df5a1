r"""The path-derivative ("sticking the landing") guide transform, for any Pyro guide.

Roeder, Wu & Duvenaud (2017), "Sticking the Landing: Simple, Lower-Variance Gradient Estimators
for Variational Inference", Eq. 5 and Sec. 3. With z = t(eps, phi)::

    d/dphi [log p(x, z) - log q_phi(z)]
        = (d/dz [log p(x, z) - log q_phi(z)]) dt/dphi          (path derivative, kept)
          - d/dphi log q_phi(z) |_{z fixed}                    (score term, mean 0, dropped)

:func:`path_derivative_guide` wraps a guide so that each unobserved, reparameterised,
non-enumerated site's log density is ``log q - (partial - stop(partial))`` with
``partial = log q_phi(stop(z))``: the same value, gradient = total - score = path. Every
dependence of log q on the sample (constraining Jacobians, upstream draws, encoder inputs)
is kept; only phi is stopped. A guide whose sites depend on earlier draws carrying a gradient
runs a second time, blocked and replayed at the detached values, to compute ``partial``.

Refused (``ValueError`` naming the site): a ``Delta`` whose value moves with phi given an
upstream continuous draw (AutoGaussian, AutoStructured), where holding the samples fixed would
hold eps, not z. A ``Delta`` fed by no continuous draw is a point mass and is accepted.
How the two passes work, with the measured checks: ``docs/guides/stl.md``.
"""

from __future__ import annotations

import functools

import pyro.poutine as poutine
import torch
from pyro.distributions import Delta, TorchDistribution
from pyro.poutine.guide import GuideMessenger
from pyro.poutine.messenger import Messenger

__all__ = ["path_derivative_guide"]


class _Partial:
    """Holds ``log q_phi(stop(z))`` of one site, filled in after the guide has run."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = None


class _PathDerivative(TorchDistribution):
    """``base`` for sampling (``rsample`` keeps the pathwise gradient); its ``log_prob`` has
    base's value and the gradient of base's log density minus the score term held by
    ``partial``: ``base.log_prob(z) - (partial - stop(partial))``."""

    arg_constraints = {}
    has_rsample = True

    def __init__(self, base: TorchDistribution, partial: _Partial) -> None:
        self.base_dist, self.partial = base, partial
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base_dist.support

    def rsample(self, sample_shape=()):
        return self.base_dist.rsample(sample_shape)

    def sample(self, sample_shape=()):
        return self.base_dist.sample(sample_shape)

    def log_prob(self, value):
        log_q = self.base_dist.log_prob(value)
        score = self.partial.value
        if score is None:  # asked before the guide finished (e.g. inside the guide itself)
            return log_q
        return log_q - (score - score.detach())

    def expand(self, batch_shape, _instance=None):
        return _PathDerivative(self.base_dist.expand(batch_shape), self.partial)

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def variance(self):
        return self.base_dist.variance


class _Recorder(Messenger):
    """Pass 1: wraps each unobserved, reparameterised, non-enumerated guide site in
    :class:`_PathDerivative`, and records every sample value (detached) for the replay and
    which of them are continuous random draws (:func:`_continuous_draw`)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, torch.Tensor] = {}
        self.partials: dict[str, _Partial] = {}
        self.fns: dict[str, TorchDistribution] = {}  # the wrapped sites' distributions
        self.draws: list[str] = []
        self.upstream: set = set()  # autograd nodes of the draws so far that carry a gradient
        self.entangled = False  # some site's distribution depends on such an earlier draw

    def _pyro_sample(self, msg) -> None:
        # a subsample site's distribution has no rsample; an enumerated one may
        # (OneHotCategoricalStraightThrough) but its values are summed over, not drawn
        if msg["is_observed"] or not msg["fn"].has_rsample:
            return
        if msg["infer"].get("enumerate") is not None:
            return
        self.partials[msg["name"]] = _Partial()
        msg["fn"] = _PathDerivative(msg["fn"], self.partials[msg["name"]])

    def _pyro_post_sample(self, msg) -> None:
        if msg["is_observed"]:
            return
        value = msg["value"]
        self.values[msg["name"]] = value.detach()
        fn = msg["fn"].base_dist if isinstance(msg["fn"], _PathDerivative) else msg["fn"]
        if msg["name"] in self.partials:
            self.fns[msg["name"]] = fn
            self.entangled = self.entangled or _reaches(_tensors_of(fn), self.upstream)
        if value.grad_fn is not None:
            self.upstream.add(value.grad_fn)
        if _continuous_draw(fn, value):
            self.draws.append(msg["name"])


def _continuous_draw(fn, value: torch.Tensor) -> bool:
    """Whether a guide site is a random draw from a continuous distribution, the kind of draw
    (eps) a pushforward z = g_phi(eps) can hang on. Not a Delta (a point mass given its
    inputs), not a discrete draw (Bernoulli, Poisson, an enumerated or subsample site: given it,
    a Delta is still a point mass). A support Pyro cannot classify counts as continuous, so the
    pushforward check runs (a loud refusal rather than a silently biased gradient)."""
    if isinstance(fn, Delta) or not value.is_floating_point():
        return False
    try:
        return not fn.support.is_discrete
    except NotImplementedError:
        return True


def _tensors_of(obj, depth: int = 3):
    """The tensors a distribution holds: its parameters, those of a base distribution, of
    transforms and of a Delta's log_density (a few levels of attributes deep)."""
    for value in vars(obj).values():
        items = value if isinstance(value, (list, tuple)) else (value,)
        for item in items:
            if isinstance(item, torch.Tensor):
                yield item
            elif depth > 0 and hasattr(item, "__dict__") and not isinstance(item, type):
                yield from _tensors_of(item, depth - 1)


def _reaches(tensors, nodes: set) -> bool:
    """Whether the autograd graph behind ``tensors`` passes through one of ``nodes``."""
    if not nodes:
        return False
    seen, stack = set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        if node in nodes:
            return True
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return False


class _Hold(Messenger):
    """Pass 2: every recorded sample site takes its recorded value. Unlike ``poutine.replay``
    it leaves the site's ``infer`` alone (a GuideMessenger keeps the prior it stores there)."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg) -> None:
        if not msg["is_observed"] and msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True


def _replay_detached(guide, values: dict, args, kwargs) -> poutine.Trace:
    """The guide with its sample sites held at ``values``, hidden from every outer handler."""
    messenger = poutine.unwrap(guide)
    with poutine.block(), _Hold(values):
        if isinstance(messenger, GuideMessenger):  # it traces itself; keep pass 1's trace
            kept = messenger.trace
            try:
                guide(*args, **kwargs)
                return messenger.trace
            finally:
                messenger.trace = kept
        return poutine.trace(guide).get_trace(*args, **kwargs)


def _check_point_masses(recorder: _Recorder, fns: dict, guide, args, kwargs) -> None:
    """Refuse a Delta whose value moves with phi at fixed upstream values (``fns``: the sites'
    distributions at those values) when it is also a function of a random draw: a pushforward
    z = g_phi(eps), not a point mass.

    Only when such a Delta exists (AutoDelta, AutoLaplaceApproximation, AutoGaussian,
    AutoStructured) does the guide run once more, with the draws as leaves that require grad.
    """
    moving = [name for name, fn in fns.items() if isinstance(fn, Delta) and fn.v.requires_grad]
    if not moving or not recorder.draws:
        return
    leaves = {name: recorder.values[name].detach().requires_grad_() for name in recorder.draws}
    probed = _replay_detached(guide, {**recorder.values, **leaves}, args, kwargs)
    for name in moving:
        value = probed.nodes[name]["fn"].v
        fed = torch.autograd.grad(value.sum(), list(leaves.values()), allow_unused=True)
        if any(g is not None for g in fed):
            raise ValueError(
                f"estimator 'stl' cannot support guide {type(poutine.unwrap(guide)).__name__} "
                f"at site {name!r}: the guide emits it as a Delta whose value is a "
                "parameter-dependent function of an earlier random draw (z = loc + scale * eps), "
                "so its program never evaluates q at a fixed z and the path derivative cannot be "
                "separated from the score term. Use 'trace', or a guide that samples the latent "
                "from a parametric distribution (AutoNormal, AutoMultivariateNormal, "
                "AutoLowRankMultivariateNormal, AutoIAFNormal, AutoNormalMessenger, ...)"
            )


def _score_term(fn, value) -> torch.Tensor:
    """log q_phi at the held value: a Delta's log_density (the Jacobian at the held upstream
    value; the value itself is held, so its equality test is left out), else log_prob."""
    if isinstance(fn, Delta):
        return fn.log_density.expand(value.shape[: value.dim() - fn.event_dim])
    return fn.log_prob(value)


def _run(guide, *args, **kwargs):
    recorder = _Recorder()
    with recorder:
        result = guide(*args, **kwargs)
    if not recorder.partials or not torch.is_grad_enabled():
        return result
    if recorder.entangled:  # pass 2: hold every draw and read the distributions off again
        replay = _replay_detached(guide, recorder.values, args, kwargs)
        fns = {name: replay.nodes[name]["fn"] for name in recorder.partials}
    else:  # no distribution hangs on an earlier draw's gradient: pass 1's are the same
        fns = recorder.fns
    _check_point_masses(recorder, fns, guide, args, kwargs)
    for name, partial in recorder.partials.items():
        partial.value = _score_term(fns[name], recorder.values[name])
    return result


def path_derivative_guide(guide):
    """``guide`` with each reparameterised site's log density carrying the STL gradient.

    The wrapper is a ``functools.partial`` of the form Pyro's ``poutine.unwrap`` sees through,
    so a :class:`~pyro.poutine.guide.GuideMessenger` (AutoNormalMessenger, ...) is still
    dispatched as one by the ELBO (its model runs inside it; its traces come from it).
    """
    return functools.partial(_call, _run, guide)


def _call(run, guide, *args, **kwargs):
    return run(guide, *args, **kwargs)
