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

import dataclasses
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.poutine.util import site_is_subsample

from inference.cavi.families import (
    FACTORS,
    PRIOR_OF,
    Q_FAMILIES,
    FactorFamily,
    QFamily,
    SlotRule,
)
from inference.cavi.probe import (
    NUM_BANDS,
    agree,
    decode,
    decode_affine,
    decode_scaled,
    dense_part,
    link_inverse,
    make_codes,
    minimal,
)

__all__ = [
    "Assignment",
    "Factor",
    "Latent",
    "ModelStructure",
    "Slot",
    "Term",
    "analyse",
    "quiet_wishart",
    "rebind",
]

DENSE_LIMIT = 256  # the most elements of a latent probed one by one for a matrix product

# every parameter a supported factor family can have, by torch.distributions name
_PARAM_NAMES = {
    "Normal": ("loc", "scale"),
    "MultivariateNormal": ("loc", "precision_matrix"),
    "Poisson": ("rate",),
    "Exponential": ("rate",),
    "Bernoulli": ("probs",),
    "Binomial": ("total_count", "probs"),
    "Categorical": ("probs",),
    "Multinomial": ("probs",),
    "Gamma": ("concentration", "rate"),
    "InverseGamma": ("concentration", "rate"),
    "Beta": ("concentration1", "concentration0"),
    "Dirichlet": ("concentration",),
    "Wishart": ("df", "covariance_matrix"),
}

# where the refusals send the user: the table of supported pairs, and the route that needs none
_SEE_ALSO = (
    "The supported conjugate pairs are tabled in the auto-CAVI guide (docs/guides/auto-cavi.md). "
    "A model with no conjugate form is fitted by SVI: an autoguide with Trace_ELBO, or "
    "TraceEnum_ELBO for discrete latents"
)

# latent families that are conjugate somewhere but have no update here: the truth, not "not
# conjugate"
_UNSUPPORTED_LATENTS = {
    "LKJCholesky": "is an LKJ latent: no conjugate update exists",
}

# what would make each (family, slot) conjugate, for the refusals
_ADVICE = {
    ("Normal", "loc"): "give the loc a Normal prior (a MultivariateNormal latent needs a "
    "MultivariateNormal likelihood)",
    ("Normal", "scale"): "give the precision a Gamma prior and write scale = precision ** -0.5, "
    "or the variance an InverseGamma prior and write scale = variance ** 0.5 (a prior on the "
    "scale itself is not conjugate)",
    ("MultivariateNormal", "loc"): "give the loc a MultivariateNormal prior",
    ("MultivariateNormal", "precision_matrix"): "give the precision a Wishart prior and pass "
    "precision_matrix= (not covariance_matrix= or scale_tril=)",
    ("Poisson", "rate"): "give the rate a Gamma prior",
    ("Exponential", "rate"): "give the rate a Gamma prior",
    ("Gamma", "rate"): "give the rate a Gamma prior",
    ("Multinomial", "probs"): "give probs a Dirichlet prior",
    ("Bernoulli", "probs"): "give probs a Beta prior (pass probs=, not logits=)",
    ("Binomial", "probs"): "give probs a Beta prior (pass probs=, not logits=)",
    ("Binomial", "total_count"): "keep total_count known",
    ("Categorical", "probs"): "give probs a Dirichlet prior",
    ("LogNormal", "loc"): "observe log(y) with a Normal likelihood instead: Normal prior on a "
    "Normal's loc is conjugate",
}


@dataclass
class Latent:
    """A continuous latent site: q in ``family`` with parameters of the site's shape (its
    prior's family, or the family whose q it takes: an Exponential prior gives a Gamma q; a
    Normal vector in a matrix product a full-covariance MultivariateNormal q)."""

    name: str
    family: QFamily
    shape: torch.Size
    event_dim: int  # the site's event dim (the family's own vector dim included)
    frames: tuple
    draw: torch.Tensor  # a draw from the prior (seeded), for the default start
    prior: str = ""  # the family of its prior, as the model wrote it
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
class Term:
    """One latent's part in a slot. Sparse: ``coef * parent[index]`` (``index``: the flat
    element, or row of a vector q, per slot element; ``coef``: a known factor per slot element,
    None for 1). Dense: ``matrix @ parent`` (``matrix``: slot shape + (L,), the parent's L
    elements in a full-covariance q)."""

    parent: str
    index: torch.Tensor | None = None
    coef: torch.Tensor | None = None
    matrix: torch.Tensor | None = None


@dataclass
class Slot:
    """A parameter slot of a factor: a known value (``const``: its statistics), or
    ``offset + sum of terms`` (:class:`Term`; ``offset`` known, None for 0) through the link
    the parent family needs."""

    rule: SlotRule | None
    const: dict | None = None
    terms: tuple[Term, ...] = ()
    offset: torch.Tensor | None = None

    @property
    def plain(self) -> Term | None:
        """The term, if the slot is one latent itself, indexed: no factor, no offset."""
        if len(self.terms) == 1 and self.offset is None:
            t = self.terms[0]
            if t.matrix is None and t.coef is None:
                return t
        return None


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
        return [t.parent for s in self.slots.values() for t in s.terms]


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


@contextmanager
def quiet_wishart():
    """Silence torch's "Singular sample detected" warning, which its Wishart sampler raises
    for every valid draw (``rsample`` tests ``support.check(sample)`` where it means its
    negation; torch 2.x, torch/distributions/wishart.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Singular sample detected")
        yield


def _layout(site) -> torch.Size:
    """The shape of a site's log-density in the trace: its distribution's batch shape
    broadcast with its value's (enumerated values bring their enumeration dims), found without
    evaluating the density (which for a Categorical over a long vocabulary, expanded to the
    plates, takes the log of every probability of every row)."""
    fn, value = site["fn"], site["value"]
    return torch.broadcast_shapes(fn.batch_shape, value.shape[: value.dim() - fn.event_dim])


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
    fn = site["fn"]
    shape = fn.batch_shape + fn.event_shape
    try:
        joint = torch.broadcast_shapes(value.shape, shape)
    except RuntimeError:
        joint = None
    if joint is None or joint[len(joint) - len(shape) :] != shape:  # the data would not fit
        raise ValueError(
            f"auto_cavi: observed site {site['name']!r} has shape {tuple(value.shape)}, which "
            f"does not fit its {type(getattr(fn, 'base_dist', fn)).__name__}'s batch and event "
            f"shape {tuple(shape)}; check the data's shape against the model's plates and "
            "to_event"
        )
    _check_support(site)


def _check_support(site) -> None:
    """An observed value must be finite and in its family's support (:func:`_check_observed`)."""
    value = site["value"]
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
        if family in _UNSUPPORTED_LATENTS:
            raise _refuse(name, family, _UNSUPPORTED_LATENTS[family], "keep it known, or fit "
                          "the model by SVI")  # fmt: skip
        if PRIOR_OF.get(family, family) not in Q_FAMILIES:
            raise _refuse(
                name, family, "is a latent of a family with no conjugate update",
                "use a Normal, MultivariateNormal, Gamma, InverseGamma, Exponential, Beta, "
                "Dirichlet or Wishart latent (for a scale, a Gamma prior on the precision)",
            )  # fmt: skip
        if not (isinstance(site["scale"], (int, float)) and site["scale"] == 1.0):
            raise ValueError(
                f"auto_cavi: latent site {name!r} is scaled by {site['scale']!r}; scales are "
                "supported on observed and discrete sites only"
            )
        value = site["value"].detach()
        latents[name] = Latent(name, Q_FAMILIES[PRIOR_OF.get(family, family)], value.shape,
                               site["fn"].event_dim, frames, value, family)  # fmt: skip
    return latents, discrete, max_plate_nesting


def _assignments(trace, discrete) -> dict[str, Assignment]:
    out = {}
    owner: dict[int, str] = {}
    for name in discrete:
        e = trace.nodes[name]["infer"]["_enumerate_dim"]
        if e in owner:
            raise ValueError(
                f"auto_cavi: the discrete latents {owner[e]!r} and {name!r} share enumeration "
                f"dim {e}: they are in a pyro.markov chain, whose recycled dims auto_cavi does not "
                "support. Write the loop without pyro.markov (each state then gets its own "
                "mean-field q), or fit the chain by SVI with TraceEnum_ELBO"
            )
        owner[e] = name
    enum_dims = set(owner)
    for name in discrete:
        site = trace.nodes[name]
        e = site["infer"]["_enumerate_dim"]
        layout = list(_layout(site))
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


def analyse(model, args, kwargs, seed: int = 0, plain: tuple | None = None) -> ModelStructure:
    """Trace ``model(*args, **kwargs)`` and return its conjugate structure, or raise the one
    ``ValueError`` that says which site breaks conjugacy and how to fix it.

    ``plain``: other ``(args, kwargs)`` for the one run with discrete latents sampled (which
    finds the sites, plates and prior draws), such as a few rows of a chunk: sampled, a
    discrete latent that selects a row of a parameter table gathers one row per data row
    (LDA: a (tokens, vocabulary) table); enumerated, as the probe runs are, it does not. The
    observed values of ``args`` are then checked in the probe runs' base run."""
    run_args, run_kwargs = plain if plain is not None else (args, kwargs)
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False), quiet_wishart():
        torch.manual_seed(seed)
        try:
            traced = poutine.trace(model).get_trace(*run_args, **run_kwargs)
        except (ValueError, RuntimeError, IndexError, TypeError, ZeroDivisionError) as err:
            first = str(err).splitlines()[0] if str(err) else ""
            raise ValueError(
                f"auto_cavi: the model fails when run with these arguments "
                f"({type(err).__name__}: {first}); check the data's sizes and shapes (a plate "
                "of size 0 has no data to fit)"
            ) from None
    for site in _sites(traced):
        if site["is_observed"]:
            _check_observed(site)
    latents, discrete, max_plate_nesting = _classify(traced)
    gen = torch.Generator().manual_seed(20261123)
    for latent in latents.values():
        latent.codes = tuple(
            make_codes(latent.family.name, latent.draw, band, gen) for band in range(NUM_BANDS)
        )
    prober = _Prober(model, latents, max_plate_nesting, args, kwargs)
    if plain is not None:  # the values of args themselves
        for site in _sites(prober.base_run):
            if site["is_observed"]:
                _check_support(site)
    assignments = _assignments(prober.base_run, discrete)
    for name, a in assignments.items():
        runs = traced if plain is None else prober.base_run
        a.batch_shape = runs.nodes[name]["fn"].batch_shape
    factors = [_factor(site, prober, assignments) for site in _sites(prober.base_run)]
    _full_covariance(factors, latents)
    return ModelStructure(latents, assignments, factors, max_plate_nesting)


class _Prober:
    """The probe runs of one model: the base run (every latent at its band-0 codes), each
    latent's runs over the other bands, and on demand the runs that prove an affine slot:
    several latents moved at once, and a latent at zero and at each unit vector."""

    def __init__(self, model, latents: dict, max_plate_nesting: int, args, kwargs,
                 banded=None) -> None:  # fmt: skip
        self.model, self.args, self.kwargs = model, args, kwargs
        self.latents, self.max_plate_nesting = latents, max_plate_nesting
        self.base = {n: latent.codes[0] for n, latent in latents.items()}
        self.base_run = self.run({})
        banded = latents if banded is None else banded  # the latents whose band runs are made
        self.bands = {n: [self.run({n: c}) for c in la.codes[1:]] for n, la in latents.items()
                      if n in banded}  # fmt: skip
        self._joint: dict = {}
        self._units: dict = {}

    def run(self, changes: dict):
        return _enumerated_trace(self.model, {**self.base, **changes}, self.max_plate_nesting,
                                 self.args, self.kwargs)  # fmt: skip

    def joint(self, names):
        """The run with every latent of ``names`` at its band-1 codes at once."""
        key = tuple(sorted(names))
        if key not in self._joint:
            self._joint[key] = self.run({n: self.latents[n].codes[1] for n in key})
        return self._joint[key]

    def units(self, name: str):
        """(the run with latent ``name`` at zero, the runs with it at each unit vector)."""
        if name not in self._units:
            zero = torch.zeros_like(self.latents[name].codes[0])
            runs = []
            for i in range(zero.numel()):
                unit = zero.clone().reshape(-1)
                unit[i] = 1.0
                runs.append(self.run({name: unit.reshape(zero.shape)}))
            self._units[name] = (self.run({name: zero}), runs)
        return self._units[name]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two slot values are equal, compared without the dims along which both are
    broadcast copies (stride 0): a Categorical's probabilities expanded over N rows are
    compared once, not N times."""
    if a.shape != b.shape:
        return False
    for d in range(a.dim()):
        if a.shape[d] > 1 and a.stride(d) == 0 and b.stride(d) == 0:
            a, b = a.narrow(d, 0, 1), b.narrow(d, 0, 1)
    return torch.equal(a, b)


def _value(run, site: str, slot: str) -> torch.Tensor:
    return _slot_values(_unwrap(run.nodes[site]["fn"])[0])[slot]


def _empty_factor(site, assignments) -> Factor:
    """A site's factor with its family, layout, weight (scale times masks) and shapes, and no
    slots yet."""
    name = site["name"]
    base, event_ndim, mask = _unwrap(site["fn"])
    family_name = _family_name(base)
    layout = _layout(site)
    weight = site["scale"]
    for m in (mask, site["mask"]):
        if m is not None:
            weight = weight * m.to(site["value"].dtype if site["value"].is_floating_point()
                                   else torch.get_default_dtype())  # fmt: skip
    if name in assignments and isinstance(weight, (int, float)):
        weight = float(weight)
    # one term per element of the family's (or per row of a vector family's) batch; an
    # enumerated value brings its enumeration dims, which the distribution's batch lacks
    batch = tuple(base.batch_shape)
    event = batch[len(batch) - event_ndim :]
    base_shape = torch.broadcast_shapes(batch, tuple(layout) + event)
    return Factor(name, family_name, FACTORS.get(family_name), layout, weight, event_ndim,
                  _present(layout, assignments), base_shape)  # fmt: skip


def _factor(site, prober: _Prober, assignments) -> Factor:
    name = site["name"]
    latents = prober.latents
    base = _unwrap(site["fn"])[0]
    family_name = _family_name(base)
    family = FACTORS.get(family_name)
    factor = _empty_factor(site, assignments)
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
        for latent_name, runs in prober.bands.items():
            values_b = [_value(run, name, slot) for run in runs]
            if any(not _same(v, value) for v in values_b):
                users.append((latent_name, values_b))
        uses[slot] = users
    if family is None:
        used = sorted({u for users in uses.values() for u, _ in users})
        if used or factor.value_latent:
            slot = next((s for s, users in uses.items() if users), "")
            advice = _ADVICE.get((family_name, slot), "use a family with a conjugate prior")
            shown = written.get(slot, slot)
            if not used:
                raise _refuse(name, family_name, "is a latent with no conjugate update", advice)
            raise _refuse(name, family_name, f"uses the latent {used[0]!r} in its parameter "
                          f"{shown!r}: no closed-form update", advice)  # fmt: skip
        factor.const_elp = minimal(site["fn"].log_prob(site["value"]).detach())
        return factor
    factor.consts = {}
    for slot, value in slot_a.items():
        users = uses[slot]
        if not users:
            if slot in family.slots:
                rule = family.slots[slot]
                rows = max(Q_FAMILIES[p].row_dims for p in rule.parents)
                factor.slots[slot] = Slot(rule, const=rule.const_stats(minimal(value, rows)))
            else:
                factor.consts[slot] = value
            continue
        factor.slots[slot] = _slot(factor, slot, written.get(slot, slot), value, users, prober)
    if factor.value_latent is None:
        if family.data_stats is None and factor.latents:
            raise _refuse(name, family_name, "is observed with a latent parameter",
                          "observe a Normal, MultivariateNormal, Poisson, Exponential, Gamma, "
                          "Bernoulli, Binomial, Categorical or Multinomial site")  # fmt: skip
        if not factor.latents:
            factor.const_elp = minimal(site["fn"].log_prob(site["value"]).detach())
        else:
            factor.value_stats = family.data_stats(site["value"].detach(), factor.consts)
    elif family.value_message is None or latents[name].prior != family_name:
        raise _refuse(name, family_name, "is a latent with no conjugate update",
                      "use a Normal, MultivariateNormal, Gamma, InverseGamma, Exponential, Beta "
                      "or Dirichlet latent")  # fmt: skip
    return factor


def _slot(factor: Factor, slot: str, shown: str, value, users, prober: _Prober) -> Slot:
    """The slot ``slot`` of ``factor``, which the latents ``users`` (name, values per band run)
    change: the latent itself, a known multiple of it, or (a Normal's loc) an affine function
    of several; or the refusal that says which it is not."""
    name, family_name, family = factor.name, factor.family_name, factor.family
    latents = prober.latents
    advice = _ADVICE.get((family_name, slot), "")
    rule = family.slots.get(slot)
    names = [u for u, _ in users]
    first = latents[names[0]]
    if rule is None:
        raise _refuse(name, family_name, f"uses the latent {names[0]!r} ({first.prior}) in "
                      f"its parameter {shown!r}, which must be known",
                      advice or "keep it a constant")  # fmt: skip
    for u in names:
        q = latents[u].family.name
        if q not in rule.parents and not (rule.affine and q == "MultivariateNormal"):
            raise _refuse(name, family_name, f"uses the {latents[u].prior} latent {u!r} as its "
                          f"{shown!r}: not conjugate", advice)  # fmt: skip
    if len(users) == 1 and first.family.name in rule.parents:  # the latent itself, by element
        link = rule.parents.get(first.family.name, "identity")
        rows = first.family.row_dims
        decoded = [
            decode(minimal(v, rows), codes, first.family.name, first.family.vector, link)
            for v, codes in zip([value, *users[0][1]], first.codes)
        ]
        idx = decoded[0]
        if all(d is not None and d.shape == idx.shape and torch.equal(d, idx) for d in decoded):
            return Slot(rule, terms=(Term(names[0], index=minimal(idx)),))
    shape = torch.broadcast_shapes(value.shape, *(v.shape for _, vs in users for v in vs))
    if rule.affine:
        return _affine(factor, slot, shown, value, users, prober, shape)
    if len(users) == 1 and first.family.scaling is not None:  # a known multiple of it
        link = rule.parents[first.family.name]
        xs = [link_inverse(v.expand(shape), link) for v in [value, *users[0][1]]]
        found = decode_scaled(xs, list(first.codes))
        if found is not None:
            index, coef = found
            return Slot(rule, terms=(Term(names[0], index=minimal(index), coef=minimal(coef)),))
    if len(users) > 1:
        raise _refuse(name, family_name, f"combines the latents {names} in its parameter "
                      f"{shown!r}: a sum of them is not conjugate, and a product is conjugate in "
                      "each given the others but not supported",
                      "use one latent per parameter, indexed (times a known factor)")  # fmt: skip
    how = (
        "write scale = precision ** -0.5 (or variance ** 0.5), indexed, times a known factor"
        if rule.parents.get(first.family.name) in ("precision", "variance")
        else f"write the latent itself as {shown}, indexed"
        + (", times a known factor" if first.family.scaling else "")
    )
    problem = f"uses the latent {names[0]!r} in its parameter {shown!r} through a transformation"
    raise _refuse(name, family_name, problem, "; ".join(filter(None, [how, advice])))


def _dense_eligible(latent: Latent) -> bool:
    """Whether a latent can take a full-covariance q over all its elements: one vector (its
    only dim an event dim) of a Normal or MultivariateNormal, of at most DENSE_LIMIT."""
    return (
        latent.family.name in ("Normal", "MultivariateNormal")
        and len(latent.shape) == 1
        and latent.event_dim == 1
        and latent.shape.numel() <= DENSE_LIMIT
    )


def _term_value(term: Term, codes: torch.Tensor) -> torch.Tensor:
    flat = codes.reshape(-1)
    if term.matrix is not None:
        return term.matrix @ flat.to(term.matrix.dtype)
    return term.coef * flat[term.index]


def _affine(factor: Factor, slot: str, shown: str, value, users, prober: _Prober, shape):
    """A Normal's loc as ``offset + sum of terms``: first, with several latents, a run that
    moves all of them at once must move the slot by the sum of their own runs' moves (a
    product W @ z does not); then each latent's part is found from its own runs (a known
    multiple of its elements, or a matrix times it), and the offset from the base run."""
    name, family_name = factor.name, factor.family_name
    latents = prober.latents
    if len(users) > 1:  # a sum moves by the sum of its parts' moves; a product W @ z does not
        moved = _value(prober.joint([u for u, _ in users]), name, slot).expand(shape)
        base = value.expand(shape)
        parts = [v[0].expand(shape) - base for _, v in users]
        size = moved.abs() + base.abs() + sum(v[0].abs() for _, v in users)
        if not agree(moved, base + sum(parts), size):
            raise _refuse(name, family_name, f"multiplies the latents {[u for u, _ in users]} "
                          f"in its parameter {shown!r} (a product such as W @ z): conjugate in "
                          "each given the others, but auto_cavi supports sums of latents only",
                          "fit this model by SVI")  # fmt: skip
    terms = []
    for u, values_b in users:
        latent = latents[u]
        xs = [v.expand(shape) for v in [value, *values_b]]
        found = decode_affine(xs, list(latent.codes)) if latent.family.name == "Normal" else None
        if found is not None:
            terms.append(Term(u, index=found[0], coef=found[1]))
            continue
        if _dense_eligible(latent):
            zero, units = prober.units(u)
            A = dense_part(
                _value(zero, name, slot).expand(shape),
                [_value(run, name, slot).expand(shape) for run in units],
                xs, list(latent.codes),
            )  # fmt: skip
            if A is not None:
                if factor.assignments:
                    raise _refuse(name, family_name, f"multiplies the latent vector {u!r} by a "
                                  f"matrix in its parameter {shown!r} under the enumerated "
                                  f"{factor.assignments}: conjugate, but not supported",
                                  "keep matrix products out of mixtures")  # fmt: skip
                terms.append(Term(u, matrix=A))
                continue
        if latent.family.name == "Normal" and latent.shape.numel() <= DENSE_LIMIT:
            advice = (
                "a matrix product of a latent is supported when the latent is one vector: "
                "sample it with .to_event(1) outside any plate, or as a MultivariateNormal"
            )
        else:
            advice = (
                f"write {shown} as an affine function of the latents (indexed latents, "
                "known factors, sums, X @ w)"
            )
        raise _refuse(name, family_name, f"uses the latent {u!r} in its parameter {shown!r} "
                      "through a transformation", advice)  # fmt: skip
    codes0 = [latents[u].codes[0] for u, _ in users]
    offset = value.expand(shape) - sum(_term_value(t, c) for t, c in zip(terms, codes0))
    terms = tuple(
        Term(t.parent, index=minimal(t.index), coef=minimal(t.coef)) if t.matrix is None
        else Term(t.parent, matrix=minimal(t.matrix, 1)) for t in terms
    )  # fmt: skip
    offset = None if bool((offset == 0).all()) else minimal(offset)
    return Slot(factor.family.slots[slot], terms=terms, offset=offset)


def _full_covariance(factors: list[Factor], latents: dict[str, Latent]) -> None:
    """A Normal vector that a matrix multiplies takes a full-covariance q (its elements are
    correlated a posteriori); every use of it must then be such a product, or its prior."""
    dense = {t.parent for f in factors for s in f.slots.values() for t in s.terms
             if t.matrix is not None}  # fmt: skip
    for f in factors:
        for slot_name, s in f.slots.items():
            for t in s.terms:
                if t.parent in dense and t.matrix is None:
                    raise _refuse(f.name, f.family_name, f"uses the latent {t.parent!r} element "
                                  f"by element in {slot_name!r}, and a matrix product elsewhere",
                                  "use it in matrix products only (X @ w; pick an element as "
                                  "X[:, [i]] @ w)")  # fmt: skip
    for name in dense:
        latents[name].family = Q_FAMILIES["MultivariateNormal"]


def rebind(structure: ModelStructure, model, args, kwargs, check: bool = True,
           keep: frozenset = frozenset()) -> ModelStructure:  # fmt: skip
    """The structure of the same model on other data (another chunk of its data plate), from
    the one :func:`analyse` found: the latents and every factor's family and slots as there,
    the data-dependent parts read from ONE enumerated run of ``model(*args, **kwargs)`` at the
    base codes -- layouts, weights (scales, masks), the data's statistics, known parameters,
    and each slot's index map, decoded from that run (a slot that is a known multiple or an
    affine function of latents is probed over their bands, as :func:`analyse` does).

    The conjugacy of each use was proved by :func:`analyse` on its data; here each slot must
    decode to the same latents again, or the chunk is refused: a model whose structure changes
    with the data. ``check``: also check the observed values (finite, in their support),
    and analyse every site of the chunk as :func:`analyse` does (every latent over its
    bands), requiring the form the first chunk had. ``keep``: factors whose known log density
    (a site with no latent parameter) is ``structure``'s on these rows too (found equal on
    every chunk by a checking pass): not evaluated again.

    Raises:
        ValueError: a site missing, added or of another family, a slot that no longer decodes,
            an observed value out of its support (with ``check``).
    """
    # blocked: rebinding inside a guide's trace (a streamed guide) must not record the probes
    with (
        torch.random.fork_rng(devices=[]),
        pyro.validation_enabled(False),
        quiet_wishart(),
        poutine.block(),
    ):
        return _rebind(structure, model, args, kwargs, check, keep)


def _rebind(structure, model, args, kwargs, check: bool, keep) -> ModelStructure:
    latents = structure.latents
    if check:  # every latent probed over its bands, as on the first chunk
        banded = set(latents)
    else:  # the latents of the slots that are not one latent itself
        banded = {t.parent for f in structure.factors for sl in f.slots.values()
                  if sl.terms and sl.plain is None for t in sl.terms}  # fmt: skip
    try:
        prober = _Prober(model, latents, structure.max_plate_nesting, args, kwargs, banded)
    except (ValueError, RuntimeError, IndexError, TypeError, ZeroDivisionError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"auto_cavi: the model fails on this chunk ({type(err).__name__}: "
                         f"{first}); check its sizes and shapes") from None  # fmt: skip
    run = prober.base_run
    sites = {s["name"]: s for s in _sites(run)}
    expected = [f.name for f in structure.factors]
    if list(sites) != expected:
        raise ValueError(
            f"auto_cavi: the model has the sites {list(sites)} on this chunk, "
            f"{expected} on the first: its structure changes with the data"
        )
    assignments = {}
    enum_dims = {a.enum_dim for a in structure.assignments.values()}
    for name, a in structure.assignments.items():
        site = sites[name]
        layout = list(_layout(site))
        for d in enum_dims - {a.enum_dim}:
            if -d <= len(layout):
                layout[d] = 1
        assignments[name] = dataclasses.replace(
            a, value=site["value"], layout=torch.Size(layout),
            batch_shape=site["fn"].batch_shape,
            frames=tuple(f for f in site["cond_indep_stack"] if f.vectorized),
        )  # fmt: skip
    factors = []
    for template in structure.factors:
        site = sites[template.name]
        if check:
            if site["is_observed"]:
                _check_support(site)
            factor = _factor(site, prober, assignments)  # the analysis of this chunk's site
            _same_form(template, factor)
            factors.append(factor)
        else:
            factors.append(_rebound_factor(template, site, prober, assignments, keep))
    return ModelStructure(latents, assignments, factors, structure.max_plate_nesting)


def _form(f: Factor) -> tuple:
    """What of a factor must not change from chunk to chunk: its family, the latent it is
    the prior of, and each slot's latents and how each enters (itself, times a known factor,
    through a matrix; with a known offset or not). A known factor that is 1, or an offset
    that is 0, on every row of the first chunk but not on another's is another form too."""
    slots = {}
    for name, sl in f.slots.items():
        if sl.const is not None:
            slots[name] = "known"
        else:
            kinds = []
            for t in sl.terms:
                kinds.append((t.parent, "matrix" if t.matrix is not None
                              else "scaled" if t.coef is not None else "itself"))  # fmt: skip
            slots[name] = (tuple(kinds), "offset" if sl.offset is not None else "")
    return f.family_name, f.value_latent, f.const_elp is not None, slots


def _same_form(template: Factor, factor: Factor) -> None:
    if _form(template) != _form(factor):
        raise ValueError(
            f"auto_cavi: site {factor.name!r} uses the latents differently on this chunk "
            f"({_form(factor)[3]}) than on the first ({_form(template)[3]}): the model's "
            "structure changes with the data"
        )


def _rebound_factor(template: Factor, site, prober: _Prober, assignments, keep) -> Factor:
    """One factor of :func:`rebind`: ``template``'s family and slots, this run's data."""
    name = template.name
    base = _unwrap(site["fn"])[0]
    if _family_name(base) != template.family_name:
        raise ValueError(f"auto_cavi: site {name!r} is a {_family_name(base)} on this chunk, a "
                         f"{template.family_name} on the first")  # fmt: skip
    factor = _empty_factor(site, assignments)
    factor.value_latent = template.value_latent
    if template.const_elp is not None:
        if name in keep:
            factor.const_elp = template.const_elp
        else:
            factor.const_elp = minimal(site["fn"].log_prob(site["value"]).detach())
        return factor
    family = template.family
    written = {n: _written(base, n) for n in _PARAM_NAMES.get(template.family_name, ())}
    values = _slot_values(base)
    for slot, value in values.items():
        kept = template.slots.get(slot)
        if kept is None:
            factor.consts[slot] = value
        elif kept.const is not None:
            rule = kept.rule
            rows = max(Q_FAMILIES[p].row_dims for p in rule.parents)
            factor.slots[slot] = Slot(rule, const=rule.const_stats(minimal(value, rows)))
        elif kept.plain is not None:
            parent = prober.latents[kept.plain.parent]
            q = parent.family
            link = kept.rule.parents.get(q.name, "identity")
            idx = decode(minimal(value, q.row_dims), parent.codes[0], q.name, q.vector, link)
            if idx is None:
                raise ValueError(
                    f"auto_cavi: site {name!r}'s {written.get(slot, slot)!r} is "
                    f"not the latent {parent.name!r} on this chunk, as it is on "
                    "the first: the model's structure changes with the data"
                )
            factor.slots[slot] = Slot(kept.rule, terms=(Term(parent.name, index=minimal(idx)),))
        else:
            users = [(t.parent, [_value(r, name, slot) for r in prober.bands[t.parent]])
                     for t in kept.terms]  # fmt: skip
            factor.slots[slot] = _slot(factor, slot, written.get(slot, slot), value, users,
                                       prober)  # fmt: skip
    if template.value_stats is not None:
        factor.value_stats = family.data_stats(site["value"].detach(), factor.consts)
    return factor
