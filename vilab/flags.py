"""Flags and checks every ``vilab`` subcommand shares: ``--out DIR``,
``--json FILE``, ``--seed``, ``--device``, ``--quiet``, and the validation of numeric flags
that turns a bad value into a ``ValueError`` naming the flag before any work starts."""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.data import CatalogSchema

__all__ = [
    "add_catalog_arguments",
    "add_jit_argument",
    "add_mnist_arguments",
    "add_output_arguments",
    "argparse_type",
    "catalog_schema",
    "check_floats",
    "check_ints",
    "check_range",
    "check_not_an_input",
    "check_output_file",
    "check_output_paths",
    "default_backend",
    "jit_mode",
    "JIT_BACKENDS",
    "WHOLE_STEP_MIN_STEPS",
    "join_negative_values",
    "physical_memory",
    "positive_int",
    "seed",
    "weights",
]

MIN_FREE_BYTES = 2**20  # an output folder's file system must have this much room before a run
MAX_SEED = 2**32 - 1  # numpy's limit; pyro.set_rng_seed seeds numpy, random and torch alike

# a number, or a comma-separated list of numbers, that starts with a minus sign: -1e-3, -40,-10
_NUMBER = r"-?[0-9.]+([eE][-+]?[0-9]+)?"
_NEGATIVE_VALUES = re.compile(rf"^-[0-9.]+([eE][-+]?[0-9]+)?(,\s*{_NUMBER})*$")


def join_negative_values(argv: list[str]) -> list[str]:
    """``--bbox -40,-10,-80,-60`` as ``--bbox=-40,-10,-80,-60`` (and ``--lr -1e-3`` as
    ``--lr=-1e-3``): argparse reads a value that starts with "-" and is not a plain number as
    an option, and every southern or western region has one."""
    out: list[str] = []
    for token in argv:
        if (
            out
            and out[-1].startswith("--")
            and "=" not in out[-1]
            and _NEGATIVE_VALUES.match(token)
        ):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def argparse_type(fn):
    """``fn`` as an argparse ``type=`` whose ValueError message is shown to the user (argparse
    replaces a ValueError by "invalid <function name> value")."""

    def parse(text):
        try:
            return fn(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = fn.__name__
    return parse


def weights(text: str) -> tuple[float, ...]:
    """Comma-separated positive finite numbers, normalised to sum to 1 (``"1,2,3,4"``)."""
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"expected comma-separated positive numbers, got {text!r}")
    total = sum(values)
    return tuple(v / total for v in values)


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {value}")
    return value


def seed(text: str) -> int:
    """An integer seed in [0, 2**32 - 1] (the range numpy, which Pyro seeds too, accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected an integer in [0, {MAX_SEED}], got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"expected an integer in [0, {MAX_SEED}], got {value}")
    return value


def add_output_arguments(
    parser: argparse.ArgumentParser,
    command: str,
    files: str,
    seed_help: str,
    device_help: str | None = "torch device, e.g. cpu or cuda (cpu)",
    quiet: bool = True,
):
    """Add the "output" group; returns it, so a command can add flags of its own to it.

    Args:
        command: the subcommand; the default folder is ``vilab-out/<command>``.
        files: what the folder receives, for the help text. seed_help: what the seed drives.
        device_help: the help of ``--device``; None: no ``--device`` (a CPU-only command).
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
        "--seed",
        type=argparse_type(seed),
        default=0,
        help=f"seed for {seed_help}; same seed and --threads, same result (0)",
    )
    if device_help is not None:
        out.add_argument("--device", default="cpu", help=device_help)
    out.add_argument(
        "--threads",
        type=argparse_type(positive_int),
        metavar="N",
        help="CPU threads for torch (default: one per core that other busy processes leave "
        "free, at least 1)",
    )
    if quiet:
        out.add_argument("--quiet", action="store_true", help="no progress bar")
    return out


def add_jit_argument(group, when: str) -> None:
    """``--jit/--no-jit`` and ``--jit-backend``: compile the SVI step (``get_elbo(..., jit=...)``);
    ``when`` says what the default is and why (measured). Read them with :func:`jit_mode`,
    which applies the command's default."""
    group.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        help="compile the SVI step with the command's default backend (same values at the same "
        "seed, checked against the uncompiled step when it is compiled); --no-jit runs Pyro's "
        f"estimator and torch's Adam uncompiled. {when}",
    )
    group.add_argument(
        "--jit-backend",
        choices=JIT_BACKENDS,
        help="what compiles (implies --jit): torchscript (the loss traced once and replayed; "
        "compiles in about 0.1 s), inductor (that trace fused by TorchInductor into C++ loops), "
        "step (the whole step -- loss, gradient and Adam -- as one TorchInductor call: the "
        "fastest steps; 10-25 s to compile the first time, about 3 s once the cache shown by "
        "'vilab cache' holds it). Inductor needs a C++ compiler; without one the torchscript "
        "trace runs, with a warning",
    )


#: The values of ``--jit-backend`` (``get_elbo``'s ``jit`` names).
JIT_BACKENDS = ("torchscript", "inductor", "step")

#: From this many SVI steps on, the whole-step backend is the default: its faster steps then
#: pay for a compile from an empty cache (measured on 2 cores: the earthquake mixture at
#: N = 1,000 saves about 6.5 ms a step for a 23 s longer first compile; expgauss with 256
#: particles about 1.3 ms for 4 s per estimator; docs/guides/compiled-svi.md).
WHOLE_STEP_MIN_STEPS = 5_000


def default_backend(steps: int) -> str:
    """The ``--jit-backend`` a run of ``steps`` SVI steps compiles with by default: ``"step"``
    from :data:`WHOLE_STEP_MIN_STEPS` on, else ``"torchscript"`` (compiles in 0.1 s)."""
    return "step" if steps >= WHOLE_STEP_MIN_STEPS else "torchscript"


def jit_mode(args: argparse.Namespace, default: str | bool = False) -> str | bool:
    """``get_elbo``'s ``jit`` from ``--jit/--no-jit`` and ``--jit-backend``: False, or the
    backend's name. ``default`` is the command's: the backend used where neither ``--jit`` nor
    ``--no-jit`` was given (False: uncompiled); ``--jit`` alone uses it too (torchscript where
    it is False).

    Raises:
        ValueError: for ``--jit-backend`` with ``--no-jit``.
    """
    if args.jit is False and args.jit_backend is not None:
        raise ValueError(f"--jit-backend {args.jit_backend} compiles the step, but --no-jit "
                         "was given: drop one of them")  # fmt: skip
    if args.jit_backend is not None:
        return args.jit_backend
    if args.jit is None:
        return default
    return (default or "torchscript") if args.jit else False


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


def check_range(args: argparse.Namespace, name: str, low: float, high: float, why: str) -> None:
    """The flag ``name`` (a number or a list of numbers), when given, lies in [low, high]: the
    range where the run means something in float64, ``why`` saying so in the error, which names
    the flag and the value before any work."""
    value = getattr(args, name)
    if value is None:
        return
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if not (math.isfinite(v) and low <= v <= high):
            raise ValueError(f"{_flag(name)} must be in [{low:g}, {high:g}] ({why}), got {v:g}")


def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_output_path(flag: str, value: str, folder: bool) -> None:
    """``value`` of ``flag`` can be written: a folder (``folder=True``) or a file, existing or
    to be created, whose nearest existing ancestor is a folder we can create files in (tried
    with a temporary file that is removed at once, so nothing is left behind)."""
    path = Path(value)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {value!r} exists and is not a folder")
    if not folder and path.is_dir():
        raise ValueError(f"{flag} {value!r} is a folder; give a file name")
    base = _nearest_existing(path if folder else path.parent)
    if not base.is_dir():
        raise ValueError(f"{flag} {value!r} cannot be created: {str(base)!r} is a file")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
        free = shutil.disk_usage(base).free
    except OSError as err:
        raise ValueError(
            f"{flag} {value!r} cannot be written: no file can be created in {str(base)!r} "
            f"({err.strerror or err})"
        ) from None
    if free < MIN_FREE_BYTES:  # an empty file fits on a full disk: ask for room too
        raise ValueError(
            f"{flag} {value!r} cannot be written: {str(base)!r} has {free} bytes free "
            f"(at least {MIN_FREE_BYTES // 2**20} MiB needed)"
        )


def check_output_file(flag: str, value: str) -> None:
    """``value`` of ``flag`` can be written as a file (not a folder; see
    :func:`_check_output_path`)."""
    _check_output_path(flag, value, folder=False)


def _input_files(inputs: dict[str, str | None]) -> list[tuple[str, Path]]:
    """(flag, file) for every input file: a file itself, or the files directly in a folder."""
    found = []
    for flag, value in inputs.items():
        if value is None:
            continue
        path = Path(value)
        if path.is_dir():
            found += [(flag, p) for p in sorted(path.iterdir()) if p.is_file()]
        elif path.exists():
            found.append((flag, path))
    return found


def check_not_an_input(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse, before any work, an output file that is one of the run's input files: the same
    path, a symbolic link to it or a hard link of it (``os.path.samefile``), so that no run
    replaces the data it reads. ``inputs``: flag -> file or folder (its files count)."""
    files = _input_files(inputs)
    for flag, value in outputs.items():
        if value is None or not Path(value).exists():
            continue
        for input_flag, path in files:
            if os.path.samefile(value, path):
                raise ValueError(
                    f"{flag} {value!r} is the input {input_flag} {str(path)!r}: writing it would "
                    "replace the data this run reads; give another file name"
                )


def check_output_paths(
    args: argparse.Namespace, inputs: dict[str, str | None] | None = None
) -> None:
    """``--out`` (a folder), ``--json`` and, where the command has it, ``--checkpoint`` (files)
    can be written, checked before any work so that a long run does not fail at its end; and
    neither output file is one of ``inputs`` (flag -> file or folder), which the run reads."""
    _check_output_path("--out", args.out, folder=True)
    outputs = {}
    for name in ("json", "checkpoint"):
        value = getattr(args, name, None)
        if value is not None:
            _check_output_path(_flag(name), value, folder=False)
            outputs[_flag(name)] = value
    check_not_an_input(outputs, inputs or {})


def add_mnist_arguments(group) -> None:
    """``--data-dir FOLDER`` (the four MNIST .gz files, offline) or ``--download`` (fetch
    them into the cache through torchvision); with neither, the cache is read."""
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        help="folder with the four MNIST .gz files (offline); without it MNIST is read from "
        "$VILAB_CACHE or ~/.cache/vilab",
    )
    where.add_argument(
        "--download",
        action="store_true",
        help="fetch MNIST into $VILAB_CACHE or ~/.cache/vilab through torchvision (11 MB, "
        "md5-checked) if it is not there yet",
    )


def _bbox(text: str):
    """``inference.data.parse_bbox``, imported when a ``--bbox`` is parsed, not when the parser
    is built (it imports torch)."""
    from inference.data import parse_bbox

    return parse_bbox(text)


def add_catalog_arguments(group, *, scale_help: str, bbox_help: str) -> None:
    """The flags of a :class:`inference.data.CatalogSchema`: ``--lat-col``, ``--lon-col``,
    ``--mag-col``, ``--strength-scale``, ``--bbox``, ``--drop-invalid``."""
    group.add_argument("--lat-col", help="latitude column (default: Latitude/lat, any case)")
    group.add_argument("--lon-col", help="longitude column (default: Longitude/lon, any case)")
    group.add_argument("--mag-col", help="magnitude column (default: Magnitude/mag, any case)")
    group.add_argument("--strength-scale", type=float, default=1.0, help=scale_help)
    group.add_argument(
        "--bbox",
        type=argparse_type(_bbox),
        metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
        help=bbox_help,
    )
    group.add_argument(
        "--drop-invalid",
        action="store_true",
        help="skip rows with missing or out-of-range values instead of stopping",
    )


def catalog_schema(args: argparse.Namespace) -> CatalogSchema:
    """The schema the flags of :func:`add_catalog_arguments` describe (``--strength-scale``
    checked first, so that its error names the flag)."""
    from inference.data import CatalogSchema  # (torch: see _bbox)

    check_floats(args, ("strength_scale",))
    return CatalogSchema(
        lat_col=args.lat_col,
        lon_col=args.lon_col,
        mag_col=args.mag_col,
        strength_scale=args.strength_scale,
        bbox=args.bbox,
        drop_invalid=args.drop_invalid,
    )
