r"""The exponential families of automatic CAVI (:mod:`inference.cavi`): q-families and factors.

Variational message passing (Winn & Bishop 2005, JMLR 6, "Variational Message Passing", §3-4;
Bishop 2006, PRML §10.1.1, eq. 10.9): in a conditionally conjugate model the optimal mean-field
factor of a latent block is in the family of its prior, with natural parameter

    eta*(block) = eta(prior) + sum over the factors that use the block of their messages,

each message being linear in the expected sufficient statistics of the factor's other
variables. This module holds the two halves of that rule as data, one entry per family:

* :data:`Q_FAMILIES` — the q-families of continuous latents: their parameters by
  torch.distributions names, the "natural" accumulator they are updated from, the expected
  statistics their children need, and the distribution (entropy, sampling) for the guide.
* :data:`FACTORS` — the factor families (a sample site's distribution): the expected log
  density E_q[log p(value | parents)] of one element, and the message to each parent slot and
  to the value.

Expected statistics are dicts of tensors: ``mean`` (E v), ``sq`` (E v^2, Normal; the diagonal of
``outer`` for a MultivariateNormal), ``outer`` (E v v^T, MultivariateNormal), ``log`` (E log v),
``log1m`` (E log(1 - v), Beta), ``logdet`` (E log|v|, Wishart). An InverseGamma latent v is
held as the Gamma of its precision 1 / v (if v ~ InverseGamma(a, b) then 1 / v ~ Gamma(a, b)):
its ``mean`` and ``log`` are E[1 / v] = a / b and E log(1 / v) = psi(a) - log b, the
statistics its Normal children need.
Accumulators ("natural" parameters, shifted so that a flat prior is 0)::

    family              accumulator                        parameters (torch.distributions names)
    Wishart             (df, W^-1)  W: (.., D, D)          df, covariance_matrix = W
    Normal              (precision, precision * loc)       loc, scale = precision^-1/2
    MultivariateNormal  (P, P m)  P: (.., D, D)            loc, covariance_matrix = P^-1
    Gamma               (concentration - 1, rate)          concentration, rate
    InverseGamma        (concentration - 1, rate)          concentration, rate  (of 1 / v)
    Beta                (concentration1 - 1, conc.0 - 1)   concentration1, concentration0
    Dirichlet           (concentration - 1,)               concentration

Each quantity is returned as *terms*, a list of ``(coefficient, operands)`` whose sum of
products it is (operands broadcast against each other), so that the driver contracts every
product with ``torch.einsum`` straight to the shape it needs: the responsibility-weighted sums
over N events become matrix products and no (K, N, D) temporary is formed. Vector families
return one operand per term, already reduced to a row.

Every formula below is the expectation of the family's log density under a factorised q;
expectations of a Gamma(a, b): E l = a / b, E log l = psi(a) - log b; of a Beta(c1, c0):
E log v = psi(c1) - psi(c1 + c0); of a Dirichlet(c): E log v_d = psi(c_d) - psi(sum c). Pure
torch; the tests check each against Pyro's Monte Carlo ELBO and against the hand derivations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributions as tdist

__all__ = ["FACTORS", "PRIOR_OF", "Q_FAMILIES", "FactorFamily", "QFamily", "SlotRule"]

LOG_2PI = math.log(2.0 * math.pi)

Stats = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# q-families of continuous latents
# --------------------------------------------------------------------------------------------


def _logdet(P):
    """log |P| of symmetric positive definite matrices, by Cholesky."""
    return 2.0 * torch.log(torch.diagonal(torch.linalg.cholesky(P), dim1=-2, dim2=-1)).sum(-1)


def _spd_inverse(P):
    """P^-1 of symmetric positive definite matrices, by Cholesky."""
    return torch.cholesky_inverse(torch.linalg.cholesky(P))


def _normal_params(nat):
    precision, precision_loc = nat
    return {"loc": precision_loc / precision, "scale": precision.rsqrt()}


def _normal_stats(p):
    loc, var = p["loc"], p["scale"].square()
    return {"mean": loc, "sq": loc.square() + var}


def _mvn_params(nat):
    P, Pm = nat
    cov = _spd_inverse(P)
    return {"loc": (cov @ Pm.unsqueeze(-1)).squeeze(-1), "covariance_matrix": cov}


def _mvn_stats(p):
    m = p["loc"]
    outer = p["covariance_matrix"] + m.unsqueeze(-1) * m.unsqueeze(-2)
    return {"mean": m, "outer": outer, "sq": torch.diagonal(outer, dim1=-2, dim2=-1)}


def _gamma_stats(p):
    a, b = p["concentration"], p["rate"]
    return {"mean": a / b, "log": torch.digamma(a) - torch.log(b)}


def _beta_stats(p):
    c1, c0 = p["concentration1"], p["concentration0"]
    total = torch.digamma(c1 + c0)
    return {"log": torch.digamma(c1) - total, "log1m": torch.digamma(c0) - total}


def _wishart_params(nat):
    df, inverse_scale = nat
    return {"df": df, "covariance_matrix": _spd_inverse(inverse_scale)}


def _wishart_stats(p):
    # E L = df W; E log|L| = sum_{i=1..D} psi((df + 1 - i) / 2) + D log 2 + log|W|
    df, W = p["df"], p["covariance_matrix"]
    D = W.shape[-1]
    i = torch.arange(1, D + 1, dtype=W.dtype, device=W.device)
    logdet = _logdet(W)
    return {
        "mean": df[..., None, None] * W,
        "logdet": torch.digamma((df[..., None] + 1.0 - i) / 2.0).sum(-1) + D * math.log(2.0)
        + logdet,
    }  # fmt: skip


def _normal_natural(p):
    precision = p["scale"].square().reciprocal()
    return precision, precision * p["loc"]


def _mvn_natural(p):
    P = _spd_inverse(p["covariance_matrix"])
    return P, (P @ p["loc"].unsqueeze(-1)).squeeze(-1)


def _dirichlet_stats(p):
    c = p["concentration"]
    return {"log": torch.digamma(c) - torch.digamma(c.sum(-1, keepdim=True))}


@dataclass(frozen=True)
class QFamily:
    """A q-family: ``params(accumulator) -> params``, ``stats(params) -> Stats``,
    ``distribution(params) -> torch Distribution``, ``natural(params) -> accumulator`` (the
    inverse of ``params``), ``param_names`` in torch names;
    ``row_dims``: the trailing dims of the site that one draw fills (0 for a scalar, 1 for a
    vector, 2 for a Wishart's matrix), all of size D; ``component_dims``: per accumulator
    component, its number of trailing dims of size D per draw (a MultivariateNormal's
    precision 2 and precision times mean 1; a Wishart's df 0 and its inverse scale 2);
    ``scaling``: the power of
    a known factor c in each accumulator component when the latent enters a slot as c * v
    (a Normal: precision c^2, precision * loc c; a Gamma rate or precision: shape 1, rate c),
    or None where no known factor keeps the pair conjugate (Beta, Dirichlet)."""

    name: str
    param_names: tuple[str, ...]
    params: Callable
    stats: Callable
    distribution: Callable
    natural: Callable
    row_dims: int = 0
    component_dims: tuple[int, ...] = (0, 0)
    scaling: tuple[int, ...] | None = None

    @property
    def vector(self) -> bool:
        """Whether one draw spans trailing dims of the site (a vector or a matrix)."""
        return self.row_dims > 0


Q_FAMILIES: dict[str, QFamily] = {
    "Normal": QFamily(
        "Normal", ("loc", "scale"), _normal_params, _normal_stats,
        lambda p: tdist.Normal(p["loc"], p["scale"]), _normal_natural, scaling=(2, 1),
    ),
    "MultivariateNormal": QFamily(
        "MultivariateNormal", ("loc", "covariance_matrix"), _mvn_params, _mvn_stats,
        lambda p: tdist.MultivariateNormal(p["loc"], covariance_matrix=p["covariance_matrix"]),
        _mvn_natural, 1, (2, 1),
    ),
    "Gamma": QFamily(
        "Gamma", ("concentration", "rate"),
        lambda nat: {"concentration": nat[0] + 1.0, "rate": nat[1]}, _gamma_stats,
        lambda p: tdist.Gamma(p["concentration"], p["rate"]),
        lambda p: (p["concentration"] - 1.0, p["rate"]), scaling=(0, 1),
    ),
    "InverseGamma": QFamily(
        "InverseGamma", ("concentration", "rate"),
        lambda nat: {"concentration": nat[0] + 1.0, "rate": nat[1]}, _gamma_stats,
        lambda p: tdist.InverseGamma(p["concentration"], p["rate"]),
        lambda p: (p["concentration"] - 1.0, p["rate"]), scaling=(0, 1),
    ),
    "Beta": QFamily(
        "Beta", ("concentration1", "concentration0"),
        lambda nat: {"concentration1": nat[0] + 1.0, "concentration0": nat[1] + 1.0},
        _beta_stats, lambda p: tdist.Beta(p["concentration1"], p["concentration0"]),
        lambda p: (p["concentration1"] - 1.0, p["concentration0"] - 1.0),
    ),
    "Dirichlet": QFamily(
        "Dirichlet", ("concentration",),
        lambda nat: {"concentration": nat[0] + 1.0}, _dirichlet_stats,
        lambda p: tdist.Dirichlet(p["concentration"]), lambda p: (p["concentration"] - 1.0,),
        1, (1,),
    ),
    "Wishart": QFamily(
        "Wishart", ("df", "covariance_matrix"), _wishart_params, _wishart_stats,
        lambda p: tdist.Wishart(p["df"], covariance_matrix=p["covariance_matrix"]),
        lambda p: (p["df"], _spd_inverse(p["covariance_matrix"])), 2, (0, 2),
    ),
}  # fmt: skip


# the q-family of a latent whose prior is of another family with the same conjugate children:
# an Exponential(rate) prior is Gamma(1, rate)
PRIOR_OF = {"Exponential": "Gamma"}


# --------------------------------------------------------------------------------------------
# Factor families: expected log density and messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotRule:
    """A parameter slot of a factor family that a latent may fill.

    Attributes:
        parents: the q-families of a conjugate parent, each with its ``link``: ``"identity"``
            (the slot holds the latent itself), ``"precision"`` (the slot is a Normal's
            scale = precision^-1/2) or ``"variance"`` (a Normal's scale = variance^1/2).
        const_stats: the statistics of a constant (known) slot value, same keys as the
            parent's. message: ``(value_stats, slot_stats, consts) -> accumulator increments``
            per element (before the weight), in the parent's accumulator order, each as terms.
        affine: whether the slot may be an affine function of several latents of the parent
            family (a Normal's loc: ``w0 + X @ w``, ``a[group] + b[item]``; the message then
            sees the value minus the other terms' mean).
        one_hot: whether the message is the one-hot vector of the value's ``index`` (a
            Categorical's): the sweep then adds each weight at its (row, category) by
            ``index_put_`` instead of forming one-hot rows of the vocabulary's length.
    """

    parents: dict[str, str]
    const_stats: Callable
    message: Callable
    affine: bool = False
    one_hot: bool = False


@dataclass(frozen=True)
class FactorFamily:
    """A factor family: its conjugate slots (:class:`SlotRule`), ``elp(value_stats, slots,
    consts) -> E log p`` per element (per row for vector families) as terms, the statistics
    of a data value ``data_stats(value, consts)`` (None if it cannot be observed with a latent
    parameter), and ``value_message(slots, consts)``: the accumulator increments for a latent
    value of this family (the prior of that latent), or None when a latent value of this
    family is not supported. ``consts`` are the slots no latent can fill (a Binomial's
    total_count, a Gamma's concentration)."""

    slots: dict[str, SlotRule]
    elp: Callable
    data_stats: Callable | None
    value_message: Callable | None = None
    vector: bool = False
    consts: tuple[str, ...] = ()


def _normal_elp(v, s, c):
    # log N(v | loc, prec^-1/2) = 1/2 (log prec - log 2pi) - prec/2 (v^2 - 2 v loc + loc^2)
    prec, loc = s["scale"], s["loc"]
    return [
        (0.5, (prec["log"],)), (-0.5 * LOG_2PI, ()), (-0.5, (prec["mean"], v["sq"])),
        (1.0, (prec["mean"], v["mean"], loc["mean"])), (-0.5, (prec["mean"], loc["sq"])),
    ]  # fmt: skip


def _precision_const(t):
    return {"mean": t.pow(-2), "log": -2.0 * torch.log(t)}


_NORMAL = FactorFamily(
    slots={
        "loc": SlotRule(
            {"Normal": "identity"}, lambda t: {"mean": t, "sq": t.square()},
            lambda v, s, c: (
                [(1.0, (s["scale"]["mean"],))], [(1.0, (s["scale"]["mean"], v["mean"]))]
            ),
            affine=True,
        ),
        "scale": SlotRule(
            {"Gamma": "precision", "InverseGamma": "variance"}, _precision_const,
            lambda v, s, c: (
                [(0.5, ())],
                [(0.5, (v["sq"],)), (-1.0, (v["mean"], s["loc"]["mean"])),
                 (0.5, (s["loc"]["sq"],))],
            ),
        ),
    },
    elp=_normal_elp,
    data_stats=lambda x, c: {"mean": x, "sq": x.square()},
    value_message=lambda s, c: (
        [(1.0, (s["scale"]["mean"],))], [(1.0, (s["scale"]["mean"], s["loc"]["mean"]))]
    ),
)  # fmt: skip


def _deviation_terms(v, loc):
    # E (v - m)(v - m)^T = E v v^T - E v E m^T - E m E v^T + E m m^T, v and m independent, as
    # terms: summed over the data by einsum, never formed per (component, row)
    v_col, m_row = v["mean"].unsqueeze(-1), loc["mean"].unsqueeze(-2)
    m_col, v_row = loc["mean"].unsqueeze(-1), v["mean"].unsqueeze(-2)
    return [(1.0, (v["outer"],)), (-1.0, (v_col, m_row)), (-1.0, (m_col, v_row)),
            (1.0, (loc["outer"],))]  # fmt: skip


def _mvn_elp(v, s, c):
    # log N(v | m, P^-1) = -D/2 log 2pi + 1/2 log|P| - 1/2 tr(P (v - m)(v - m)^T), per row;
    # tr(P E(v - m)(v - m)^T) = <P, E v v^T> - 2 E v . P E m + <P, E m m^T> by einsum
    P, loc = s["precision_matrix"], s["loc"]
    D = P["mean"].shape[-1]
    Pm = _matvec(P["mean"], loc["mean"])
    trace = (
        torch.einsum("...ij,...ij->...", P["mean"], v["outer"])
        - 2.0 * torch.einsum("...i,...i->...", v["mean"], Pm)
        + torch.einsum("...ij,...ij->...", P["mean"], loc["outer"])
    )
    return [(1.0, (-0.5 * D * LOG_2PI + 0.5 * P["logdet"] - 0.5 * trace,))]


def _matvec(P, x):
    # P x over the last dims, broadcasting the rest (einsum: no (.., D, 1) batch of matmuls)
    return torch.einsum("...ij,...j->...i", P, x)


def _one_hot_message(v, s, c):
    # d/dE[log pi] of log pi_v: the one-hot vector of v (a Categorical's outcome)
    num_categories = s["probs"]["log"].shape[-1]
    one_hot = torch.nn.functional.one_hot(v["index"], num_categories)
    return ([(1.0, (one_hot.to(s["probs"]["log"].dtype),))],)


_MVN = FactorFamily(
    slots={
        "loc": SlotRule(
            {"MultivariateNormal": "identity"},
            lambda t: {"mean": t, "outer": t.unsqueeze(-1) * t.unsqueeze(-2)},
            lambda v, s, c: (
                [(1.0, (s["precision_matrix"]["mean"],))],
                [(1.0, (_matvec(s["precision_matrix"]["mean"], v["mean"]),))],
            ),
        ),
        # log N in the precision P: 1/2 log|P| - 1/2 tr(P S): a Wishart's df + 1, W^-1 + S
        "precision_matrix": SlotRule(
            {"Wishart": "identity"}, lambda t: {"mean": t, "logdet": _logdet(t)},
            lambda v, s, c: ([(1.0, ())], _deviation_terms(v, s["loc"])),
        ),
    },
    elp=_mvn_elp,
    data_stats=lambda x, c: {"mean": x, "outer": x.unsqueeze(-1) * x.unsqueeze(-2)},
    value_message=lambda s, c: (
        [(1.0, (s["precision_matrix"]["mean"],))],
        [(1.0, (_matvec(s["precision_matrix"]["mean"], s["loc"]["mean"]),))],
    ),
    vector=True,
)  # fmt: skip


def _wishart_elp(v, s, c):
    # log W(L | n, W) = -n D/2 log 2 - n/2 log|W| - log Gamma_D(n/2) + (n - D - 1)/2 log|L|
    #                   - 1/2 tr(W^-1 L), per matrix
    n, W = c["df"], c["covariance_matrix"]
    D = W.shape[-1]
    inverse = _spd_inverse(W)
    log_norm = (-0.5 * n * D * math.log(2.0) - 0.5 * n * _logdet(W)
                - torch.mvlgamma(0.5 * n, p=D))  # fmt: skip
    return [(1.0, (log_norm + 0.5 * (n - D - 1.0) * v["logdet"]
                   - 0.5 * (inverse * v["mean"]).sum((-1, -2)),))]  # fmt: skip


def _gamma_const(t):
    return {"mean": t, "log": torch.log(t)}


def _beta_const(t):
    return {"log": torch.log(t), "log1m": torch.log1p(-t)}


def _binomial_data(k, c):
    n = c["total_count"]
    log_choose = torch.lgamma(n + 1.0) - torch.lgamma(k + 1.0) - torch.lgamma(n - k + 1.0)
    return {"mean": k, "log_choose": log_choose, "total": torch.broadcast_to(n, k.shape)}


def _multinomial_data(x, c):
    # log of the multinomial coefficient n! / prod_d x_d!, n = sum_d x_d (per row)
    log_coef = torch.lgamma(x.sum(-1) + 1.0) - torch.lgamma(x + 1.0).sum(-1)
    return {"counts": x, "log_coef": log_coef}


def _gamma_elp(v, s, c):
    # log Gamma(v | a, b) = a log b - lgamma(a) + (a - 1) log v - b v
    a, b = c["concentration"], s["rate"]
    return [
        (1.0, (a, b["log"])), (-1.0, (torch.lgamma(a),)), (1.0, (a - 1.0, v["log"])),
        (-1.0, (b["mean"], v["mean"])),
    ]  # fmt: skip


def _inverse_gamma_elp(v, s, c):
    # log InvGamma(v | a, b) = a log b - lgamma(a) - (a + 1) log v - b / v, with v's statistics
    # those of its precision 1 / v: log v = -log(1 / v)
    a, b = c["concentration"], s["rate"]
    return [
        (1.0, (a, b["log"])), (-1.0, (torch.lgamma(a),)), (1.0, (a + 1.0, v["log"])),
        (-1.0, (b["mean"], v["mean"])),
    ]  # fmt: skip


def _beta_elp(v, s, c):
    c1, c0 = c["concentration1"], c["concentration0"]
    log_beta = torch.lgamma(c1) + torch.lgamma(c0) - torch.lgamma(c1 + c0)
    return [(1.0, (c1 - 1.0, v["log"])), (1.0, (c0 - 1.0, v["log1m"])), (-1.0, (log_beta,))]


def _dirichlet_elp(v, s, c):
    conc = c["concentration"]
    log_norm = torch.lgamma(conc.sum(-1)) - torch.lgamma(conc).sum(-1)
    return [(1.0, (log_norm + ((conc - 1.0) * v["log"]).sum(-1),))]


def _categorical_elp(v, s, c):
    # log Cat(v | pi) = log pi_v; E log pi_v from the Dirichlet parent (or log pi if known)
    log_probs, index = s["probs"]["log"], v["index"]
    batch = torch.broadcast_shapes(log_probs.shape[:-1], index.shape)
    log_probs = log_probs.expand(batch + log_probs.shape[-1:])
    return [(1.0, (torch.gather(log_probs, -1, index.expand(batch).unsqueeze(-1)).squeeze(-1),))]


def _multinomial_elp(v, s, c):
    # log Mult(x | n, pi) = log n! - sum_d log x_d! + sum_d x_d log pi_d, per row
    log_probs = s["probs"]["log"]
    return [(1.0, (v["log_coef"] + (v["counts"] * log_probs).sum(-1),))]


_RATE = {"Gamma": "identity"}  # a rate's conjugate prior

FACTORS: dict[str, FactorFamily] = {
    "Normal": _NORMAL,
    "MultivariateNormal": _MVN,
    "Poisson": FactorFamily(
        # log Poisson(v | l) = v log l - l - log v!
        slots={"rate": SlotRule(_RATE, _gamma_const,
                                lambda v, s, c: ([(1.0, (v["mean"],))], [(1.0, ())]))},
        elp=lambda v, s, c: [(1.0, (v["mean"], s["rate"]["log"])), (-1.0, (s["rate"]["mean"],)),
                             (-1.0, (v["log_factorial"],))],
        data_stats=lambda x, c: {"mean": x, "log_factorial": torch.lgamma(x + 1.0)},
    ),
    "Exponential": FactorFamily(
        # log Exp(v | l) = log l - l v  (Gamma(1, l))
        slots={"rate": SlotRule(_RATE, _gamma_const,
                                lambda v, s, c: ([(1.0, ())], [(1.0, (v["mean"],))]))},
        elp=lambda v, s, c: [(1.0, (s["rate"]["log"],)), (-1.0, (s["rate"]["mean"], v["mean"]))],
        data_stats=lambda x, c: {"mean": x},
        value_message=lambda s, c: ([(0.0, ())], [(1.0, (s["rate"]["mean"],))]),
    ),
    "Bernoulli": FactorFamily(
        # log Bernoulli(v | p) = v log p + (1 - v) log(1 - p)
        slots={"probs": SlotRule({"Beta": "identity"}, _beta_const,
                                 lambda v, s, c: ([(1.0, (v["mean"],))],
                                                  [(1.0, ()), (-1.0, (v["mean"],))]))},
        elp=lambda v, s, c: [(1.0, (v["mean"], s["probs"]["log"])),
                             (1.0, (s["probs"]["log1m"],)),
                             (-1.0, (v["mean"], s["probs"]["log1m"]))],
        data_stats=lambda x, c: {"mean": x},
    ),
    "Binomial": FactorFamily(
        # log Binomial(k | n, p) = log C(n, k) + k log p + (n - k) log(1 - p)
        slots={"probs": SlotRule({"Beta": "identity"}, _beta_const,
                                 lambda v, s, c: ([(1.0, (v["mean"],))],
                                                  [(1.0, (v["total"],)), (-1.0, (v["mean"],))]))},
        elp=lambda v, s, c: [(1.0, (v["log_choose"],)), (1.0, (v["mean"], s["probs"]["log"])),
                             (1.0, (v["total"], s["probs"]["log1m"])),
                             (-1.0, (v["mean"], s["probs"]["log1m"]))],
        data_stats=_binomial_data,
        consts=("total_count",),
    ),
    "Categorical": FactorFamily(
        slots={"probs": SlotRule({"Dirichlet": "identity"}, lambda t: {"log": torch.log(t)},
                                 _one_hot_message, one_hot=True)},
        elp=_categorical_elp,
        data_stats=lambda x, c: {"index": x.long()},
    ),
    "Multinomial": FactorFamily(
        slots={"probs": SlotRule({"Dirichlet": "identity"}, lambda t: {"log": torch.log(t)},
                                 lambda v, s, c: ([(1.0, (v["counts"],))],))},
        elp=_multinomial_elp,
        data_stats=_multinomial_data,
        vector=True,
    ),
    "Gamma": FactorFamily(
        # a Gamma value (latent or data) with a known shape and a rate that may be a latent
        slots={"rate": SlotRule(_RATE, _gamma_const,
                                lambda v, s, c: ([(1.0, (c["concentration"],))],
                                                 [(1.0, (v["mean"],))]))},
        elp=_gamma_elp,
        data_stats=lambda x, c: {"mean": x, "log": torch.log(x)},
        consts=("concentration",),
        value_message=lambda s, c: ([(1.0, (c["concentration"] - 1.0,))],
                                    [(1.0, (s["rate"]["mean"],))]),
    ),
    "InverseGamma": FactorFamily(
        # the prior of a variance; its accumulator is that of the precision's Gamma(a, b)
        slots={"rate": SlotRule(_RATE, _gamma_const,
                                lambda v, s, c: ([(1.0, (c["concentration"],))],
                                                 [(1.0, (v["mean"],))]))},
        elp=_inverse_gamma_elp, data_stats=None, consts=("concentration",),
        value_message=lambda s, c: ([(1.0, (c["concentration"] - 1.0,))],
                                    [(1.0, (s["rate"]["mean"],))]),
    ),
    "Beta": FactorFamily(
        slots={}, elp=_beta_elp, data_stats=None, consts=("concentration1", "concentration0"),
        value_message=lambda s, c: ([(1.0, (c["concentration1"] - 1.0,))],
                                    [(1.0, (c["concentration0"] - 1.0,))]),
    ),
    "Dirichlet": FactorFamily(
        slots={}, elp=_dirichlet_elp, data_stats=None, consts=("concentration",), vector=True,
        value_message=lambda s, c: ([(1.0, (c["concentration"] - 1.0,))],),
    ),
    "Wishart": FactorFamily(
        slots={}, elp=_wishart_elp, data_stats=None, consts=("df", "covariance_matrix"),
        vector=True,
        value_message=lambda s, c: (
            [(1.0, (c["df"],))],
            [(1.0, (_spd_inverse(c["covariance_matrix"]),))],
        ),
    ),
}  # fmt: skip
