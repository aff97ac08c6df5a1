r"""The start of automatic CAVI's q (for :mod:`inference.cavi`): the default parameters of each
latent around a seeded prior draw, a user's ``init`` checked site by site, random
responsibilities of the enumerated assignments, and the dtype every update runs in."""

from __future__ import annotations

import functools

import torch

from inference.cavi.analysis import Assignment, Latent

__all__ = ["checked_init", "checked_probs", "default_params", "random_probs", "working_dtypes"]


def default_params(latent: Latent) -> dict:
    """A start around the seeded prior draw d: Normal(d, 1), MultivariateNormal(d, I),
    Gamma with mean d and shape 1, InverseGamma(1, d), Beta and Dirichlet with mean d and total
    concentration 2 (resp. D), Wishart with mean d and D + 2 degrees of freedom."""
    d = latent.draw
    name = latent.family.name
    if name == "Normal":
        return {"loc": d.clone(), "scale": torch.ones_like(d)}
    if name == "MultivariateNormal":
        eye = torch.eye(d.shape[-1], dtype=d.dtype, device=d.device)
        return {"loc": d.clone(), "covariance_matrix": eye.expand(d.shape + d.shape[-1:]).clone()}
    if name == "MultivariateNormal" and latent.prior == "Normal":  # a vector in a matrix product
        return {"loc": d.clone(), "covariance_matrix": torch.eye(d.shape[-1], dtype=d.dtype,
                                                                 device=d.device)}  # fmt: skip
    if name == "Gamma":
        return {"concentration": torch.ones_like(d), "rate": 1.0 / d}
    if name == "InverseGamma":  # E[1 / v] = 1 / d
        return {"concentration": torch.ones_like(d), "rate": d.clone()}
    if name == "Beta":
        return {"concentration1": 2.0 * d, "concentration0": 2.0 * (1.0 - d)}
    if name == "Wishart":  # mean df W = d
        df = torch.full(d.shape[:-2], d.shape[-1] + 2.0, dtype=d.dtype, device=d.device)
        return {"df": df, "covariance_matrix": d / df[..., None, None]}
    return {"concentration": d * d.shape[-1]}


def checked_init(latent: Latent, given) -> dict:
    """The user's start for one latent, as tensors of the site's shape and dtype, or a
    ValueError naming the site and the parameter."""
    names = latent.family.param_names
    if not isinstance(given, dict) or set(given) != set(names):
        raise ValueError(
            f"init[{latent.name!r}] must be a dict with exactly the keys {list(names)} "
            f"({latent.family.name}), got {given!r:.200}"
        )
    d = latent.draw
    out = {}
    for key in names:
        try:
            value = torch.as_tensor(given[key], dtype=d.dtype, device=d.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be numbers: {err}") from None
        want = default_params(latent)[key].shape
        try:
            value = value.expand(want).clone()
        except RuntimeError:
            raise ValueError(
                f"init[{latent.name!r}][{key!r}] must broadcast to shape {tuple(want)}, got "
                f"{tuple(value.shape)}"
            ) from None
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be finite")
        low = d.shape[-1] - 1.0 if key == "df" else 0.0  # a Wishart's df > D - 1
        if key != "loc" and key != "covariance_matrix" and not bool((value > low).all()):
            raise ValueError(f"init[{latent.name!r}][{key!r}] must be > {low:g}, got "
                             f"{value.min()}")  # fmt: skip
        out[key] = value
    if "covariance_matrix" in out:
        try:
            torch.linalg.cholesky(out["covariance_matrix"])
        except RuntimeError:
            raise ValueError(f"init[{latent.name!r}]['covariance_matrix'] must be positive "
                             "definite") from None  # fmt: skip
    return out


def working_dtypes(structure) -> tuple[torch.Tensor, torch.dtype]:
    """A scalar of the dtype and device every update runs in: the promotion of the latents'
    draws and the observations (float64 data under float32 priors written as ``Normal(0.,
    10.)`` is float64, as Pyro's own log densities promote it; float64 if nothing is a float);
    and the coarsest float dtype among them, whose rounding Pyro's own ELBO carries."""
    found = [latent.draw for latent in structure.latents.values()]
    found += [a.value for a in structure.assignments.values()]
    for factor in structure.factors:
        found += list(_tensors(factor.value_stats))
    floats = [t.dtype for t in found if t.is_floating_point()] or [torch.float64]
    dtype = functools.reduce(torch.promote_types, floats)
    coarsest = max(floats, key=lambda d: torch.finfo(d).eps)
    return torch.zeros((), dtype=dtype, device=found[0].device if found else None), coarsest


def _tensors(tree):
    """The tensors of a nest of dicts, lists and tuples."""
    if torch.is_tensor(tree):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors(value)


def checked_probs(a: Assignment, given, like: torch.Tensor) -> torch.Tensor:
    """The user's q(Z) for an enumerated site, ``{"probs": p}`` with p of shape batch_shape +
    (K,) (a Categorical) or batch_shape (a Bernoulli's P(Z = 1)), in the enumerated layout;
    or a ValueError naming the site."""
    K = a.support.numel()
    if not isinstance(given, dict) or set(given) != {"probs"}:
        raise ValueError(f"init[{a.name!r}] must be a dict with exactly the key ['probs'] "
                         f"({a.family}), got {given!r:.200}")  # fmt: skip
    try:
        p = torch.as_tensor(given["probs"], dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"init[{a.name!r}]['probs'] must be numbers: {err}") from None
    if a.family == "Bernoulli":
        p = torch.stack([1.0 - p, p], -1)
    want = tuple(a.batch_shape) + (K,)
    if tuple(p.shape) != want:
        shown, got = (want[:-1], p.shape[:-1]) if a.family == "Bernoulli" else (want, p.shape)
        raise ValueError(f"init[{a.name!r}]['probs'] must have shape {shown}, got "
                         f"{tuple(got)}")  # fmt: skip
    total = p.sum(-1)
    if not (bool(torch.isfinite(p).all()) and bool((p >= 0).all())
            and bool(((total - 1).abs() <= 1e-6).all())):  # fmt: skip
        raise ValueError(f"init[{a.name!r}]['probs'] must be probabilities >= 0 summing to 1 "
                         "over the last dim")  # fmt: skip
    moved = torch.movedim(torch.empty(a.layout), a.enum_dim, -1).shape
    return torch.movedim(p.reshape(moved), -1, a.enum_dim).contiguous()


def random_probs(a: Assignment, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Responsibilities drawn uniformly on the simplex (normalised exponentials), seeded; drawn
    row by row (the support last), so that rows drawn in chunks from one generator are the
    rows drawn at once (:mod:`inference.cavi.stream`)."""
    moved = torch.movedim(torch.empty(a.layout, device="meta"), a.enum_dim, -1).shape
    u = torch.rand(moved, generator=gen, dtype=like.dtype).to(like.device)
    e = -torch.log1p(-u)
    return torch.movedim(e / e.sum(-1, keepdim=True), -1, a.enum_dim)
