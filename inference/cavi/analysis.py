r"""Recognise the conjugate structure of a Pyro model from its trace (for :mod:`inference.cavi`).

A Pyro trace records each site's distribution and value but not how a distribution's
parameters were computed from the latents. This module finds that out by *probing*: the model is
run once with every continuous latent set to known codes (the base run), and, per latent, once
for each of ``NUM_BANDS - 1`` further bands of its support with that latent alone set to codes
in the band. A parameter slot of a site that changes between the base run and a latent's runs
depends on that latent; it is a conjugate use only if, in every run, every element of the slot
decodes to the code of one element of the latent (to 64 ulps of the dtype) -- through the link
the pair needs (the latent itself, or a Normal's scale = precision^-1/2 for a Gamma precision)
-- and to the same element in every run. The codes are distinct, and over the bands each
element visits its family's whole support (Normal: both signs, magnitudes 1e-2 to 1e2; Gamma:
1e-3 to 1e3; Beta: 0.0025 to 0.9975; Dirichlet: every column near 0 and near 1), so a function
that is the identity on part of the support only (abs, relu, clamp, max), or nowhere (a scale,
an offset, a permutation of components), fails to decode in some run; a sum of two latents
changes in two latents' runs. All are refused. What is recovered is an index map: the element
of the latent behind each element of the slot (``Vindex``, plain indexing, broadcasting and
enumerated assignments alike), stored with its broadcast dimensions kept at size 1.

Discrete latents with finite support (``Categorical``, ``Bernoulli``) are enumerated in
parallel (Pyro's ``poutine.enum``), so a site that depends on them carries one dimension per
assignment; their mean-field q(Z) is then computed exactly from those enumerated terms.

Refusals (one ``ValueError`` naming the site, its family and what would make it conjugate):
a latent family with no conjugate update, a parameter used nonlinearly or by a non-conjugate
family, a slot that mixes latents or only partly uses one, subsampled plates, masks or scales
on latents, sequential enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.poutine.util import site_is_subsample

from inference.cavi.families import FACTORS, Q_FAMILIES, FactorFamily, QFamily, SlotRule
from inference.cavi.probe import NUM_BANDS, decode, make_codes, minimal

__all__ = ["Assignment", "Factor", "Latent", "ModelStructure", "Slot", "analyse"]

# every parameter a supported factor family can have, by torch.distributions name
_PARAM_NAMES = {
    "Normal": ("loc", "scale"),
    "MultivariateNormal": ("loc", "precision_matrix"),
    "Poisson": ("rate",),
    "Bernoulli": ("probs",),
    "Binomial": ("total_count", "probs"),
    "Categorical": ("probs",),
    "Gamma": ("concentration", "rate"),
    "Beta": ("concentration1", "concentration0"),
    "Dirichlet": ("concentration",),
}

# where the refusals send the user: the table of supported pairs, and the route that needs none
_SEE_ALSO = (
    "The supported conjugate pairs are tabled in the auto-CAVI guide (docs/guides/auto-cavi.md). "
    "A model with no conjugate form is fitted by SVI: an autoguide with Trace_ELBO, or "
    "TraceEnum_ELBO for discrete latents"
)

# what would make each (family, slot) conjugate, for the refusals
_ADVICE = {
    ("Normal", "loc"): "give the loc a Normal prior (a MultivariateNormal latent needs a "
    "MultivariateNormal likelihood)",
    ("Normal", "scale"): "give the precision a Gamma prior and pass scale = precision ** -0.5 "
    "(a prior on the scale itself is not conjugate)",
    ("MultivariateNormal", "loc"): "give the loc a MultivariateNormal prior",
    ("MultivariateNormal", "precision_matrix"): "keep the covariance known (a constant)",
    ("Poisson", "rate"): "give the rate a Gamma prior",
    ("Bernoulli", "probs"): "give probs a Beta prior (pass probs=, not logits=)",
    ("Binomial", "probs"): "give probs a Beta prior (pass probs=, not logits=)",
    ("Binomial", "total_count"): "keep total_count known",
    ("Categorical", "probs"): "give probs a Dirichlet prior",
    ("LogNormal", "loc"): "observe log(y) with a Normal likelihood instead: Normal prior on a "
    "Normal's loc is conjugate",
}


@dataclass
class Latent:
    """A continuous latent site: q in ``family`` with parameters of the site's shape."""

    name: str
    family: QFamily
    shape: torch.Size
    event_dim: int  # the site's event dim (the family's own vector dim included)
    frames: tuple
    draw: torch.Tensor  # a draw from the prior (seeded), for the default start
    codes: tuple = ()  # probe values: the base run's, then one per band (NUM_BANDS in all)


@dataclass
class Assignment:
    """An enumerated discrete latent: q(Z) as probabilities in the enumerated layout ``layout``
    (the support at ``enum_dim``, the site's plates to its right, other enum dims 1)."""

    name: str
    family: str  # "Categorical" or "Bernoulli"
    enum_dim: int
    support: torch.Tensor  # (K,) the enumerated values, in order
    value: torch.Tensor  # the enumerated value tensor of the trace
    layout: torch.Size
    batch_shape: torch.Size
    frames: tuple
    scale: float


@dataclass
class Slot:
    """A parameter slot of a factor: a known value (``const``: its statistics) or a gathered
    latent (``parent``, ``index``: flat element or row of the parent per slot element)."""

    rule: SlotRule | None
    const: dict | None = None
    parent: str | None = None
    index: torch.Tensor | None = None


@dataclass
class Factor:
    """One sample site's log density as a factor of the ELBO.

    ``layout`` is its log-prob shape in the enumerated trace; ``assignments`` the enumerated
    latents it depends on; ``event_ndim`` the dims its family's elementwise terms are summed
    over (an ``Independent``'s reinterpreted dims); ``base_shape`` the batch shape of its
    family's terms before that sum (one per element, or per row of a vector family);
    ``weight`` scale times mask.
    """

    name: str
    family_name: str
    family: FactorFamily | None
    layout: torch.Size
    weight: torch.Tensor | float
    event_ndim: int
    assignments: tuple[str, ...]
    base_shape: torch.Size = torch.Size()
    value_latent: str | None = None
    value_stats: dict | None = None
    slots: dict[str, Slot] = field(default_factory=dict)
    consts: dict = field(default_factory=dict)
    const_elp: torch.Tensor | None = None

    @property
    def latents(self) -> list[str]:
        return [s.parent for s in self.slots.values() if s.parent is not None]


@dataclass
class ModelStructure:
    """What :func:`analyse` found: the latents in trace order, the factors, the plate depth."""

    latents: dict[str, Latent]
    assignments: dict[str, Assignment]
    factors: list[Factor]
    max_plate_nesting: int


# --------------------------------------------------------------------------------------------
# Distributions: unwrap Independent and Masked, read the slots
# --------------------------------------------------------------------------------------------


def _unwrap(fn) -> tuple[object, int, torch.Tensor | None]:
    """(base distribution, reinterpreted event dims, mask) of a site's distribution."""
    event_ndim, mask = 0, None
    while True:
        if isinstance(fn, dist.Independent):
            event_ndim += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        elif isinstance(fn, dist.MaskedDistribution):
            mask = fn._mask if mask is None else mask & fn._mask
            fn = fn.base_dist
        else:
            return fn, event_ndim, mask


def _family_name(base) -> str:
    return type(base).__name__


def _written(base, slot: str) -> str:
    """The name under which the user gave ``slot``: ``logits`` for a Bernoulli, Binomial or
    Categorical made with ``logits=`` (torch derives ``probs`` from it on demand)."""
    if slot == "probs" and "logits" in vars(base) and "probs" not in vars(base):
        return "logits"
    return slot


def _slot_values(base) -> dict[str, torch.Tensor]:
    """The parameter tensors of a supported family, or for another family the ones torch
    declares (``arg_constraints``) that it holds, to see whether they depend on a latent."""
    names = _PARAM_NAMES.get(_family_name(base))
    if names is None:
        names = list(getattr(base, "arg_constraints", {}))
    out = {}
    for n in names:
        try:
            value = getattr(base, n, None)
        except Exception:  # a lazy parameter that this distribution cannot compute
            value = None
        if torch.is_tensor(value):
            out[n] = value.detach()
    return out


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------


def _sites(trace):
    return [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]


def _enumerated_trace(model, values, max_plate_nesting, args, kwargs):
    conditioned = poutine.condition(model, data=values)
    enumerated = poutine.enum(
        config_enumerate(conditioned, default="parallel"),
        first_available_dim=-max_plate_nesting - 1,
    )
    with pyro.validation_enabled(False):
        return poutine.trace(enumerated).get_trace(*args, **kwargs)


def _refuse(site_name: str, family: str, problem: str, advice: str) -> ValueError:
    return ValueError(f"auto_cavi: site {site_name!r} ({family}) {problem}; {advice}. {_SEE_ALSO}.")


def _check_observed(site) -> None:
    """An observed value must be finite and in its family's support (a Poisson count an
    integer >= 0, a Bernoulli outcome 0 or 1, ...): the closed-form updates would otherwise
    turn it into a NaN bound, or into the bound of another model."""
    value = site["value"]
    if not torch.is_tensor(value):
        return
    finite = torch.isfinite(value)
    try:
        ok = site["fn"].support.check(value)  # the batch shape: event dims already reduced
        while finite.dim() > ok.dim():
            finite = finite.all(-1)
        ok = ok & finite
    except (NotImplementedError, RuntimeError):  # a support torch cannot check elementwise
        ok = finite
    if not bool(ok.all()):
        where = tuple((~ok).nonzero()[0].tolist())
        raise ValueError(
            f"auto_cavi: observed site {site['name']!r} holds {value[where].tolist()!r} at "
            f"{list(where)}, which is not a finite value in the support of its "
            f"{type(_unwrap(site['fn'])[0]).__name__} ({site['fn'].support})"
        )


def _classify(trace) -> tuple[dict, list, int]:
    """Latent continuous sites, discrete latent site names, and the plate depth."""
    max_plate_nesting = 0
    latents: dict[str, Latent] = {}
    discrete = []
    for site in _sites(trace):
        name = site["name"]
        frames = tuple(f for f in site["cond_indep_stack"] if f.vectorized)
        for f in site["cond_indep_stack"]:
            if f.full_size is not None and f.full_size != f.size:
                raise ValueError(
                    f"auto_cavi: site {name!r} is in plate {f.name!r} subsampled to {f.size} of "
                    f"{f.full_size}; CAVI sweeps over all the data: remove subsample_size"
                )
        if frames:
            max_plate_nesting = max(max_plate_nesting, max(-f.dim for f in frames))
        if site["is_observed"]:
            continue
        base, _, mask = _unwrap(site["fn"])
        family = _family_name(base)
        if site["infer"].get("enumerate") == "sequential":
            raise ValueError(
                f"auto_cavi: site {name!r} asks for sequential enumeration; auto_cavi "
                "enumerates discrete latents in parallel: drop infer={'enumerate': 'sequential'}"
            )
        if mask is not None or site["mask"] is not None:
            raise ValueError(f"auto_cavi: latent site {name!r} is masked; masks are supported "
                             "on observed sites only")  # fmt: skip
        if getattr(site["fn"], "has_enumerate_support", False):
            if family not in ("Categorical", "Bernoulli"):
                raise _refuse(name, family, "is a discrete latent of a family auto_cavi does "
                              "not enumerate", "use a Categorical or Bernoulli latent")  # fmt: skip
            discrete.append(name)
            continue
        if family not in Q_FAMILIES:
            raise _refuse(
                name, family, "is a latent of a family with no conjugate update",
                "use a Normal, MultivariateNormal, Gamma, Beta or Dirichlet latent (for a "
                "scale, a Gamma prior on the precision)",
            )  # fmt: skip
        if not (isinstance(site["scale"], (int, float)) and site["scale"] == 1.0):
            raise ValueError(
                f"auto_cavi: latent site {name!r} is scaled by {site['scale']!r}; scales are "
                "supported on observed and discrete sites only"
            )
        value = site["value"].detach()
        latents[name] = Latent(name, Q_FAMILIES[family], value.shape, site["fn"].event_dim,
                               frames, value)  # fmt: skip
    return latents, discrete, max_plate_nesting


def _assignments(trace, discrete) -> dict[str, Assignment]:
    out = {}
    enum_dims = {trace.nodes[n]["infer"]["_enumerate_dim"] for n in discrete}
    for name in discrete:
        site = trace.nodes[name]
        e = site["infer"]["_enumerate_dim"]
        log_prob = site["fn"].log_prob(site["value"])
        layout = list(log_prob.shape)
        for d in enum_dims - {e}:
            if -d <= len(layout):
                layout[d] = 1
        scale = site["scale"]
        if torch.is_tensor(scale):
            raise ValueError(f"auto_cavi: discrete site {name!r} has a tensor scale; only a "
                             "number is supported")  # fmt: skip
        base, _, _ = _unwrap(site["fn"])
        out[name] = Assignment(
            name,
            _family_name(base),
            e,
            site["value"].reshape(-1),
            site["value"],
            torch.Size(layout),
            None,
            tuple(f for f in site["cond_indep_stack"] if f.vectorized),
            float(scale),
        )
    return out


def _present(layout: torch.Size, assignments: dict[str, Assignment]) -> tuple[str, ...]:
    return tuple(
        a.name for a in assignments.values() if -a.enum_dim <= len(layout)
        and layout[a.enum_dim] > 1
    )  # fmt: skip


def analyse(model, args, kwargs, seed: int = 0) -> ModelStructure:
    """Trace ``model(*args, **kwargs)`` and return its conjugate structure, or raise the one
    ``ValueError`` that says which site breaks conjugacy and how to fix it."""
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
        torch.manual_seed(seed)
        try:
            plain = poutine.trace(model).get_trace(*args, **kwargs)
        except (ValueError, RuntimeError, IndexError, TypeError, ZeroDivisionError) as err:
            first = str(err).splitlines()[0] if str(err) else ""
            raise ValueError(
                f"auto_cavi: the model fails when run with these arguments "
                f"({type(err).__name__}: {first}); check the data's sizes and shapes (a plate "
                "of size 0 has no data to fit)"
            ) from None
    for site in _sites(plain):
        if site["is_observed"]:
            _check_observed(site)
    latents, discrete, max_plate_nesting = _classify(plain)
    gen = torch.Generator().manual_seed(20261123)
    for latent in latents.values():
        latent.codes = tuple(
            make_codes(latent.family.name, latent.draw, band, gen) for band in range(NUM_BANDS)
        )
    base_values = {n: latent.codes[0] for n, latent in latents.items()}
    run_a = _enumerated_trace(model, base_values, max_plate_nesting, args, kwargs)
    runs_b = {
        n: [
            _enumerated_trace(model, {**base_values, n: codes}, max_plate_nesting, args, kwargs)
            for codes in latent.codes[1:]
        ]
        for n, latent in latents.items()
    }
    assignments = _assignments(run_a, discrete)
    for name, a in assignments.items():
        a.batch_shape = plain.nodes[name]["fn"].batch_shape
    factors = [_factor(site, runs_b, latents, assignments) for site in _sites(run_a)]
    return ModelStructure(latents, assignments, factors, max_plate_nesting)


def _factor(site, runs_b, latents, assignments) -> Factor:
    name = site["name"]
    base, event_ndim, mask = _unwrap(site["fn"])
    family_name = _family_name(base)
    family = FACTORS.get(family_name)
    log_prob = site["fn"].log_prob(site["value"]).detach()
    layout = log_prob.shape
    weight = site["scale"]
    for m in (mask, site["mask"]):
        if m is not None:
            weight = weight * m.to(log_prob.dtype)
    if name in assignments and isinstance(weight, (int, float)):
        weight = float(weight)
    # one term per element of the family's (or per row of a vector family's) batch; an
    # enumerated value brings its enumeration dims, which the distribution's batch lacks
    batch = tuple(base.batch_shape)
    event = batch[len(batch) - event_ndim :]
    base_shape = torch.broadcast_shapes(batch, tuple(layout) + event)
    factor = Factor(name, family_name, family, layout, weight, event_ndim,
                    _present(layout, assignments), base_shape)  # fmt: skip
    if name in latents:
        factor.value_latent = name
        if factor.assignments:
            raise _refuse(name, family_name, "is a continuous latent whose prior depends on "
                          f"the enumerated {factor.assignments}",
                          "keep continuous latents' priors free of discrete latents")  # fmt: skip
    written = {n: _written(base, n) for n in _PARAM_NAMES.get(family_name, ())}  # before
    slot_a = _slot_values(base)  # reads probs, which torch then caches beside logits
    uses = {}
    for slot, value in slot_a.items():
        users = []
        for latent_name, runs in runs_b.items():
            values_b = [_slot_values(_unwrap(run.nodes[name]["fn"])[0])[slot] for run in runs]
            if any(v.shape != value.shape or not torch.equal(v, value) for v in values_b):
                users.append((latent_name, values_b))
        uses[slot] = users
    if family is None:
        used = sorted({u for users in uses.values() for u, _ in users})
        if used or factor.value_latent:
            slot = next((s for s, users in uses.items() if users), "")
            advice = _ADVICE.get((family_name, slot), "use a family with a conjugate prior")
            shown = written.get(slot, slot)
            raise _refuse(name, family_name, f"uses the latent {used[0]!r} in its parameter "
                          f"{shown!r}: no closed-form update", advice)  # fmt: skip
        factor.const_elp = minimal(log_prob)
        return factor
    factor.consts = {}
    for slot, value in slot_a.items():
        users = uses[slot]
        if not users:
            if slot in family.slots:
                rule = family.slots[slot]
                event = 1 if Q_FAMILIES[rule.parent].vector else 0
                factor.slots[slot] = Slot(rule, const=rule.const_stats(minimal(value, event)))
            else:
                factor.consts[slot] = value
            continue
        latent_name, values_b = users[0]
        parent = latents[latent_name]
        shown = written.get(slot, slot)  # the parameter's name as the model wrote it
        advice = _ADVICE.get((family_name, slot), "")
        if len(users) > 1:
            raise _refuse(name, family_name, f"combines the latents {[u for u, _ in users]} in "
                          f"its parameter {shown!r}", "use one latent per parameter, "
                          "indexed but not transformed")  # fmt: skip
        rule = family.slots.get(slot)
        if rule is None:
            raise _refuse(name, family_name, f"uses the latent {latent_name!r} "
                          f"({parent.family.name}) in its parameter {shown!r}, which must be "
                          "known", advice or "keep it a constant")  # fmt: skip
        if rule.parent != parent.family.name:
            raise _refuse(name, family_name, f"uses the {parent.family.name} latent "
                          f"{latent_name!r} as its {shown!r}: not conjugate", advice)  # fmt: skip
        # decode each run's values without their broadcast copies (dims along which they are
        # constant); every run must then decode, to the same elements, in the same shape
        event = 1 if parent.family.vector else 0
        decoded = [
            decode(minimal(v, event), codes, parent.family.name, parent.family.vector, rule.link)
            for v, codes in zip([value, *values_b], parent.codes)
        ]
        idx_a = decoded[0]
        if any(
            idx is None or idx.shape != idx_a.shape or not torch.equal(idx, idx_a)
            for idx in decoded
        ):
            how = (
                "pass scale = precision ** -0.5, the precision latent indexed but not transformed"
                if rule.link == "precision"
                else f"pass the latent itself as {slot}, indexed but not transformed"
            )
            problem = (
                f"uses the latent {latent_name!r} in its parameter {shown!r} "
                "through a transformation (or only in part)"
            )
            raise _refuse(name, family_name, problem, "; ".join(filter(None, [how, advice])))
        factor.slots[slot] = Slot(rule, parent=latent_name, index=minimal(idx_a))
    if factor.value_latent is None:
        if family.data_stats is None and factor.latents:
            raise _refuse(name, family_name, "is observed with a latent parameter",
                          "observe a Normal, MultivariateNormal, Poisson, Bernoulli, Binomial "
                          "or Categorical site")  # fmt: skip
        if not factor.latents:
            factor.const_elp = minimal(log_prob)
        else:
            factor.value_stats = family.data_stats(site["value"].detach(), factor.consts)
    elif family.value_message is None or latents[name].family.name != family_name:
        raise _refuse(
            name, family_name, "is a latent with no conjugate update",
            "use a Normal, MultivariateNormal, Gamma, Beta or Dirichlet latent",
        )  # fmt: skip
    return factor
