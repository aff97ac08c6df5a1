"""Reading data from the outside world: earthquake catalogs (CSV).

A catalog is a CSV file with a header row and one event per row. Three columns are used:
latitude, longitude (degrees) and magnitude. Their names are configurable; by default the
first header matching (case-insensitively) one of ``LATITUDE_NAMES``, ``LONGITUDE_NAMES`` and
``MAGNITUDE_NAMES`` is taken, which fits both catalogs in ``../shared/data/earthquakes``
(``Latitude/Longitude/Magnitude`` and ``latitude/longitude/mag``).

Locations become ``X = (longitude, latitude)`` -- planar coordinates in degrees, so that a plot
of X is a map; the model ignores the sphere, so regions crossing the antimeridian should be
avoided (select one with ``bbox``). Strength is ``S = round(strength_scale * magnitude)``: the
model needs an integer count, and the scale sets how finely magnitudes are resolved (scale 1
turns M 5.5-9.1 into 6-9; scale 10 into 55-91).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

__all__ = [
    "LATITUDE_NAMES",
    "LONGITUDE_NAMES",
    "MAGNITUDE_NAMES",
    "Catalog",
    "load_catalog",
    "parse_bbox",
]

LATITUDE_NAMES = ("latitude", "lat")
LONGITUDE_NAMES = ("longitude", "lon", "long", "lng")
MAGNITUDE_NAMES = ("magnitude", "mag")

_MAX_LISTED = 5
MAX_STRENGTH = 2**53  # strengths beyond are not all representable in float64


class Catalog(NamedTuple):
    """An earthquake catalog ready for the model.

    Attributes:
        X: (N, 2) locations (longitude, latitude) in degrees.
        S: (N,) integer strengths ``round(strength_scale * magnitude)`` (float dtype).
        magnitude: (N,) the magnitudes read.
        num_rows: data rows in the file.
        num_invalid: rows skipped as invalid (only with ``drop_invalid=True``).
        num_outside: valid rows outside the bounding box.
    """

    X: torch.Tensor
    S: torch.Tensor
    magnitude: torch.Tensor
    num_rows: int
    num_invalid: int
    num_outside: int


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``"lat_min,lat_max,lon_min,lon_max"`` (degrees) with clear errors."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"bbox must be 4 numbers lat_min,lat_max,lon_min,lon_max; got {text!r}")
    lat_min, lat_max, lon_min, lon_max = values
    if not (-90 <= lat_min < lat_max <= 90):
        raise ValueError(
            f"bbox latitudes must satisfy -90 <= lat_min < lat_max <= 90; got {text!r}"
        )
    if not (-180 <= lon_min < lon_max <= 180):
        raise ValueError(
            f"bbox longitudes must satisfy -180 <= lon_min < lon_max <= 180; got {text!r}"
        )
    return lat_min, lat_max, lon_min, lon_max


def _find_column(header: list[str], given: str | None, candidates: tuple[str, ...], what: str):
    if given is not None:
        if given not in header:
            raise ValueError(f"{what} column {given!r} not found; the file has columns {header}")
        return header.index(given)
    lowered = [h.strip().lower() for h in header]
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    raise ValueError(
        f"no {what} column found (looked for {list(candidates)}, case-insensitively); "
        f"the file has columns {header}; name it with --{what[:3]}-col"
    )


def _not_utf8(path, err: UnicodeDecodeError) -> ValueError:
    """The error for a file that is not UTF-8 text, with the line and column (1-based, in
    bytes) of its first bad byte: the text reader's own offset counts from its current chunk,
    so the file is decoded once more as a whole to find it."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8-sig")
        start = err.start  # not reached: the reader failed, so the whole file fails too
    except UnicodeDecodeError as whole:
        start = whole.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return ValueError(
        f"catalog {str(path)!r} is not UTF-8 text: byte 0x{data[start]:02x} at line {line}, "
        f"column {column} (a binary file, or text in another encoding: save it as UTF-8 CSV)"
    )


def _parse_row(row: list[str], cols: tuple[int, int, int], scale: float):
    """(lat, lon, mag, strength) of one row, or a reason it is invalid."""
    names = ("latitude", "longitude", "magnitude")
    values = []
    for name, c in zip(names, cols):
        text = row[c].strip() if c < len(row) else ""
        try:
            v = float(text)
        except ValueError:
            return f"{name} {text!r} is not a number"
        if not math.isfinite(v):
            return f"{name} {text!r} is not finite"
        values.append(v)
    lat, lon, mag = values
    if not -90 <= lat <= 90:
        return f"latitude {lat} is outside [-90, 90]"
    if not -180 <= lon <= 180:
        return f"longitude {lon} is outside [-180, 180]"
    scaled = scale * mag
    if not (math.isfinite(scaled) and abs(scaled) <= MAX_STRENGTH):
        return (
            f"magnitude {row[cols[2]].strip()!r} times strength scale {scale:g} is {scaled:g}, "
            "beyond 2**53 (strengths must be integers float64 holds exactly)"
        )
    strength = round(scaled)
    if strength < 0:
        return f"magnitude {mag} gives a negative strength {strength}"
    return lat, lon, mag, strength


def iter_csv_rows(path, names: tuple, scale: float):
    """The data rows of a CSV catalog, one at a time: ``(line number, parsed)`` where parsed is
    ``(lat, lon, mag, strength)`` or the reason the row is invalid (blank rows are skipped).

    Args:
        names: (lat_col, lon_col, mag_col), None to detect. scale: the strength scale.

    Raises:
        ValueError: no header, a missing column, or a line that is not CSV (lazily, as read);
            UnicodeDecodeError: the file is not UTF-8 (see :func:`_not_utf8`).
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError("the file is empty: expected a header row")
            cols = (
                _find_column(header, names[0], LATITUDE_NAMES, "latitude"),
                _find_column(header, names[1], LONGITUDE_NAMES, "longitude"),
                _find_column(header, names[2], MAGNITUDE_NAMES, "magnitude"),
            )
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                yield reader.line_num, _parse_row(row, cols, scale)
        except csv.Error as err:  # a NUL byte, a cell beyond csv.field_size_limit(), ...
            raise ValueError(
                f"line {reader.line_num} cannot be read as CSV ({err}); is it a CSV file?"
            ) from None


def invalid_rows_error(path, bad: list[str]) -> ValueError:
    """The error for a catalog with invalid rows: their count and the first few reasons."""
    listed = "; ".join(bad[:_MAX_LISTED])
    more = f" (and {len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
    return ValueError(
        f"catalog {str(path)!r} has {len(bad)} invalid row(s): {listed}{more}. "
        "Fix them or pass --drop-invalid to skip them"
    )


def check_strength_scale(strength_scale) -> None:
    """Raise ValueError unless the strength scale is a finite number > 0."""
    if not (math.isfinite(strength_scale) and strength_scale > 0):
        raise ValueError(f"strength_scale must be a finite number > 0, got {strength_scale!r}")


def check_catalog_path(path, what: str = "CSV") -> None:
    """Raise ValueError if ``path`` is a folder or does not exist."""
    if os.path.isdir(path):
        raise ValueError(f"catalog {str(path)!r} is a folder, not a {what} file")
    if not os.path.isfile(path):
        raise ValueError(f"catalog {str(path)!r} does not exist")


def load_catalog(
    path: str | os.PathLike,
    *,
    lat_col: str | None = None,
    lon_col: str | None = None,
    mag_col: str | None = None,
    strength_scale: float = 1.0,
    bbox: tuple[float, float, float, float] | None = None,
    drop_invalid: bool = False,
    dtype: torch.dtype = torch.float64,
) -> Catalog:
    """Read a CSV earthquake catalog.

    Args:
        path: the CSV file.
        lat_col, lon_col, mag_col: column names (None: detect, see module docstring).
        strength_scale: S = round(strength_scale * magnitude); finite, > 0.
        bbox: keep events with lat_min <= lat <= lat_max and lon_min <= lon <= lon_max.
        drop_invalid: skip rows with missing, non-numeric or out-of-range values (their
            count is in the result); by default such rows stop the read, the first ones listed.

    Raises:
        ValueError: missing file or columns, empty file, invalid rows, nothing left to fit.
    """
    check_strength_scale(strength_scale)
    check_catalog_path(path)
    good, bad, num_rows = [], [], 0
    try:
        for line, parsed in iter_csv_rows(path, (lat_col, lon_col, mag_col), strength_scale):
            num_rows += 1
            if isinstance(parsed, str):
                bad.append(f"line {line}: {parsed}")
            else:
                good.append(parsed)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except ValueError as err:
        raise ValueError(f"catalog {str(path)!r}: {err}") from None
    if num_rows == 0:
        raise ValueError(f"catalog {str(path)!r} has a header but no data rows")
    if bad and not drop_invalid:
        raise invalid_rows_error(path, bad)
    if not good:
        raise ValueError(f"catalog {str(path)!r} has no valid rows")
    table = torch.tensor(good, dtype=dtype)  # (rows, 4): lat, lon, mag, strength
    num_outside = 0
    if bbox is not None:
        lat_min, lat_max, lon_min, lon_max = bbox
        lat, lon = table[:, 0], table[:, 1]
        inside = (lat >= lat_min) & (lat <= lat_max) & (lon >= lon_min) & (lon <= lon_max)
        num_outside = int((~inside).sum())
        table = table[inside]
        if table.shape[0] == 0:
            raise ValueError(f"no event of {str(path)!r} lies inside bbox {bbox}")
    return Catalog(
        X=table[:, [1, 0]].contiguous(),
        S=table[:, 3].contiguous(),
        magnitude=table[:, 2].contiguous(),
        num_rows=num_rows,
        num_invalid=len(bad),
        num_outside=num_outside,
    )
