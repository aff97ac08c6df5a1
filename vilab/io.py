"""Atomic output (:func:`inference.data.atomic.replaced_atomically`): every file is written to
a temporary name beside its target, then renamed, so a crash or a bad input never leaves a
half-written file behind, and stale temporaries of dead runs are removed. JSON is strict (RFC
8259: no NaN or Infinity)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

__all__ = [
    "save_figure",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "strict_json",
]

NON_FINITE_NOTE = "non_finite"  # key of the note listing the values written as null


def _atomic(path: str | os.PathLike, write) -> Path:
    from inference.data.atomic import replaced_atomically  # (torch: not for the parser)

    with replaced_atomically(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return _atomic(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")))


def strict_json(obj):
    """``obj`` with every NaN or infinite float replaced by None (JSON ``null``), and the list
    of where they were, as ``"a.b[2]: nan"`` strings: strict JSON readers (JavaScript,
    ``jq``, Go, ...) reject Python's ``NaN``/``Infinity`` tokens.

    Returns:
        (the cleaned copy, the list of replaced values).
    """
    replaced: list[str] = []

    def clean(value, where: str):
        if isinstance(value, float) and not math.isfinite(value):
            replaced.append(f"{where or '(top)'}: {value}")
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    return clean(obj, ""), replaced


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically; returns the path.

    Non-finite floats are written as ``null``; when there are any and ``obj`` is a dict, the
    key ``"non_finite"`` lists where they were and what they were (e.g. ``"svi.snr[1]: nan"``).
    """
    cleaned, replaced = strict_json(obj)
    if replaced and isinstance(cleaned, dict):
        cleaned[NON_FINITE_NOTE] = replaced
    return atomic_write_text(path, json.dumps(cleaned, indent=2, allow_nan=False) + "\n")


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the suffix), then close it, also when
    saving fails; returns the path. ``kwargs`` go to ``fig.savefig`` (``dpi``, ...)."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    try:
        return _atomic(path, lambda f: fig.savefig(f, format=fmt, **kwargs))
    finally:
        plt.close(fig)
