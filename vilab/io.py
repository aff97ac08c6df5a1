"""Atomic output: every file is written to a temporary name beside its target, then renamed, so
a crash or a bad input never leaves a half-written file behind. Files get the permissions of
any file the user creates (0666 less the umask), not ``mkstemp``'s private 0600; JSON is
strict (RFC 8259: no NaN or Infinity)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

__all__ = [
    "remove_stale_temporaries",
    "save_figure",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "strict_json",
]

NON_FINITE_NOTE = "non_finite"  # key of the note listing the values written as null


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted atomic write of ``path`` left beside it
    (``.NAME.*.tmp``); returns those removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


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
