"""Flags and checks every ``vilab`` subcommand shares (DESIGN.md §7): ``--out DIR``,
``--json FILE``, ``--seed``, ``--device``, ``--quiet``, and the validation of numeric flags
that turns a bad value into a ``ValueError`` naming the flag before any work starts."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = ["add_output_arguments", "check_floats", "check_ints", "check_out_dir"]


def add_output_arguments(
    parser: argparse.ArgumentParser,
    command: str,
    files: str,
    seed_help: str,
    device_help: str = "torch device, e.g. cpu or cuda (cpu)",
    quiet: bool = True,
):
    """Add the "output" group; returns it, so a command can add flags of its own to it.

    Args:
        command: the subcommand; the default folder is ``vilab-out/<command>``.
        files: what the folder receives, for the help text. seed_help: what the seed drives.
        quiet: also add ``--quiet`` (no progress bar).
    """
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        default=f"vilab-out/{command}",
        metavar="DIR",
        help=f"folder for {files} (default vilab-out/{command})",
    )
    out.add_argument("--json", metavar="FILE", help="also write the JSON summary here")
    out.add_argument(
        "--seed", type=int, default=0, help=f"seed for {seed_help}; same seed, same result (0)"
    )
    out.add_argument("--device", default="cpu", help=device_help)
    if quiet:
        out.add_argument("--quiet", action="store_true", help="no progress bar")
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_ints(args: argparse.Namespace, names, low: int = 1) -> None:
    """Each named flag, when given, is an integer >= ``low``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f"{_flag(name)} must be an integer >= {low}, got {value}")


def check_floats(args: argparse.Namespace, names) -> None:
    """Each named flag, when given, is a finite number > 0."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{_flag(name)} must be a finite number > 0, got {value}")


def check_out_dir(args: argparse.Namespace) -> None:
    """``--out`` is a folder or does not exist yet."""
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {str(args.out)!r} exists and is not a folder")
