"""``vilab cache``: where compiled SVI steps are kept between runs, and how to clear it.

A compiled step (``--jit-backend step`` or ``inductor``) is built by TorchInductor, whose
on-disk caches (the FX graph and AOT-autograd caches, generated C++ and shared libraries) let
the next run of the same model, estimator, data shape and dtype load it instead of compiling
it again: measured on 2 cores, the earthquake step's compile takes 10-25 s the first time and
about 3 s from the cache. ``vilab`` keeps these caches in one folder:

    $VILAB_CACHE_DIR/inductor, else $XDG_CACHE_HOME/vilab/inductor, else ~/.cache/vilab/inductor

unless TORCHINDUCTOR_CACHE_DIR is set, which then wins (yours: ``vilab cache --clear`` leaves it
alone). Each compiled graph adds about 1-5 MB; nothing is ever evicted, so clear it when it has
grown (a cleared cache only means the next compile is a cold one).

    vilab cache            # the folder, its size and number of files
    vilab cache --clear    # delete vilab's folder
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

__all__ = ["add_arguments", "cache_dir", "inductor_dir", "run", "using_the_cache"]


def cache_dir() -> Path:
    """vilab's cache folder: ``$VILAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/vilab``, else
    ``~/.cache/vilab``."""
    if os.environ.get("VILAB_CACHE_DIR"):
        return Path(os.environ["VILAB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vilab"


def inductor_dir() -> Path:
    """Where TorchInductor's caches go in a ``vilab`` command: ``TORCHINDUCTOR_CACHE_DIR`` if set,
    else ``cache_dir() / "inductor"``."""
    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or cache_dir() / "inductor")


class using_the_cache:  # noqa: N801 -- used as a context manager, named as one
    """Within: ``TORCHINDUCTOR_CACHE_DIR`` is :func:`inductor_dir` (as set before, if it was);
    after: as it was (a test or notebook calling ``vilab.cli.main`` keeps its environment)."""

    def __enter__(self) -> Path:
        self._before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        folder = inductor_dir()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
        return folder

    def __exit__(self, *exc) -> None:
        if self._before is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = self._before


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clear", action="store_true", help="delete vilab's cache folder")
    parser.add_argument("--json", metavar="FILE", help="also write the summary here (JSON)")


def _size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder`` (0, 0 where it does not exist)."""
    total = files = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += (Path(root) / name).lstat().st_size
                files += 1
            except OSError:  # removed while we walked
                continue
    return total, files


def run(args: argparse.Namespace) -> dict:
    """Show (or ``--clear``) the folder of :func:`inductor_dir`; print and return a summary."""
    from vilab.flags import check_output_file

    if args.json is not None:
        check_output_file("--json", args.json)
    folder = inductor_dir()
    mine = folder == cache_dir() / "inductor"
    if args.clear and not mine:
        raise ValueError(
            f"TORCHINDUCTOR_CACHE_DIR={os.environ['TORCHINDUCTOR_CACHE_DIR']!r} is set: that "
            "folder is yours, not vilab's, so --clear leaves it (unset it to clear vilab's)"
        )
    size, files = _size(folder)
    if args.clear and folder.exists():
        shutil.rmtree(folder)
    summary = {
        "folder": str(folder),
        "set_by": "vilab" if mine else "TORCHINDUCTOR_CACHE_DIR",
        "bytes": size,
        "files": files,
        "cleared": bool(args.clear),
    }
    verb = "cleared" if args.clear else "holds"
    print(f"{folder}: {verb} {size / 2**20:.1f} MiB in {files} files")
    if args.json is not None:
        from vilab.io import atomic_write_json

        atomic_write_json(args.json, summary)
    return summary
