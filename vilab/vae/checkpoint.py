"""The VAE's checkpoint file: written atomically, loaded without running code, and checked
before anything of it is used.

A checkpoint holds the run's config and data sizes, the networks' and Adam's state, the epoch
history and every random state (torch's and Pyro's global ones, the data generator), so that
a resumed run reproduces the uninterrupted one bit for bit. Loading refuses, with one error
naming the file and what is wrong: a foreign or unsafe pickle, a missing key, a weight that is
not finite or whose name or shape does not fit the config's networks, an optimizer state that
does not fit them, a malformed history or random state.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pyro.util
import torch

from vilab.io import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "restore", "rng_state", "save_checkpoint"]

CHECKPOINT_FORMAT = "pyro-vi-lab/vae-checkpoint/1"
_KEYS = {"format", "config", "data", "model", "guide", "optimizer", "history", "rng"}


def rng_state(gen: torch.Generator, device: torch.device) -> dict:
    """Every random state, as tensors and plain Python values only (so that the checkpoint
    loads with ``weights_only=True``): numpy's MT19937 state is stored as lists."""
    rng = pyro.util.get_rng_state()
    name, keys, pos, has_gauss, cached = rng["numpy"]
    state = {
        "torch": rng["torch"],
        "random": rng["random"],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "data": gen.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (the keys above, less ``format``) with its format tag, atomically."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded without running code from it.

    ``torch.load(weights_only=True)`` unpickles only tensors and plain Python values; anything
    else (a foreign pickle, a file that would run code) is refused before it is built. Then the
    format tag, the keys, the history and the finiteness of every tensor are checked.

    Raises:
        ValueError: naming the file, for a missing, empty, corrupt, foreign or unsafe file, or
            one whose contents are malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle/zip/torch all raise their own types
        reason = str(err).splitlines()[0][:200]
        raise ValueError(
            f"checkpoint {str(path)!r} is not a vilab VAE checkpoint that loads safely "
            f"(only tensors and plain values are accepted; nothing in it was run): {reason}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} is not a vilab VAE checkpoint of format "
            f"{CHECKPOINT_FORMAT!r} (found {found!r}); start a new run without --resume"
        )
    if not _KEYS <= set(state):
        raise ValueError(f"checkpoint {str(path)!r} lacks {sorted(_KEYS - set(state))}")
    problem = _history_problem(state["history"]) or _rng_problem(state["rng"])
    for part in ("model", "guide", "optimizer"):
        problem = problem or _finite_problem(state[part], part)
    if problem:
        raise ValueError(f"checkpoint {str(path)!r}: {problem}; it cannot be resumed")
    return state


def restore(path, state: dict, modules: dict, optimizer, gen: torch.Generator) -> None:
    """Load ``state`` (from :func:`load_checkpoint` of ``path``) into ``modules`` (``{"model":
    ..., "guide": ...}``), the optimizer and the random states, after checking that every
    weight's name and shape fit the modules: nothing is changed if anything does not fit."""
    for part, module in modules.items():
        problem = _fit_problem(state[part], module.state_dict(), part)
        if problem:
            raise ValueError(f"checkpoint {str(path)!r}: {problem}; it cannot be resumed")
    for part, module in modules.items():
        module.load_state_dict(state[part])
    try:
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], gen)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ValueError(
            f"checkpoint {str(path)!r}: its optimizer or random state does not fit this run "
            f"({reason}); it cannot be resumed"
        ) from None


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    name, keys, pos, has_gauss, cached = state["numpy"]
    numpy_state = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    pyro.util.set_rng_state(
        {"torch": state["torch"], "random": _as_tuples(state["random"]), "numpy": numpy_state}
    )
    gen.set_state(state["data"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    """Python's random state is nested tuples; a round trip may return lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _history_problem(history) -> str | None:
    """The history must be epochs 1, 2, ... each with finite losses and seconds >= 0."""
    if not isinstance(history, (list, tuple)):
        return f"its history is a {type(history).__name__}, not a list of epochs"
    for i, record in enumerate(history):
        numbers = isinstance(record, (list, tuple)) and len(record) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in record
        )  # fmt: skip
        if not numbers or record[0] != i + 1 or not all(map(math.isfinite, record[1:])):
            return f"history entry {i} is {record!r}, not (epoch {i + 1}, 3 finite numbers)"
        if record[3] < 0:
            return f"history entry {i} has negative seconds {record[3]!r}"
    return None


def _rng_problem(rng) -> str | None:
    """The random states must have the shapes :func:`rng_state` writes."""
    if not isinstance(rng, dict) or not {"torch", "random", "numpy", "data"} <= set(rng):
        return "its random state lacks the torch, random, numpy or data generator's state"
    for key in ("torch", "data"):
        value = rng[key]
        if not (torch.is_tensor(value) and value.dtype == torch.uint8 and value.dim() == 1):
            return f"its {key} random state is not a byte tensor"
    numpy_state = rng["numpy"]
    keys = numpy_state[1] if isinstance(numpy_state, (list, tuple)) and numpy_state else None
    if (
        keys is None
        or len(numpy_state) != 5
        or not isinstance(keys, (list, tuple))
        or len(keys) != 624
    ):
        return "its numpy random state is not MT19937's (name, 624 keys, pos, gauss, cached)"
    random_state = rng["random"]
    if not (isinstance(random_state, (list, tuple)) and len(random_state) == 3):
        return "its Python random state is not (version, state, gauss)"
    return None


def _finite_problem(tree, where: str) -> str | None:
    """The first tensor of a state dict (nested: Adam's) that holds a NaN or an infinity."""
    if torch.is_tensor(tree):
        if tree.is_floating_point() and not bool(torch.isfinite(tree).all()):
            return f"{where} holds non-finite values"
        return None
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(
        tree, (list, tuple)) else ()  # fmt: skip
    for key, value in items:
        problem = _finite_problem(value, f"{where}.{key}")
        if problem:
            return problem
    return None


def _fit_problem(saved, expected: dict, part: str) -> str | None:
    """``saved`` must have the names and shapes of ``expected`` (a module's state dict)."""
    if not isinstance(saved, dict):
        return f"its {part} weights are a {type(saved).__name__}, not a state dict"
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or extra:
        return f"its {part} weights lack {missing} and have extra {extra}"
    for name, value in expected.items():
        got = saved[name]
        if not torch.is_tensor(got) or got.shape != value.shape:
            shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
            return (
                f"{part}.{name} has shape {shape}, where this config's network has "
                f"{tuple(value.shape)}"
            )
    return None
