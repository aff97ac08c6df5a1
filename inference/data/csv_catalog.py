"""Earthquake catalogs in CSV: :func:`load_catalog` reads one into memory, and
:func:`iter_csv_rows` streams its rows (for :func:`inference.data.convert_csv`).

A catalog is a UTF-8 CSV file with a header row and one event per row; the columns used, the
strengths and the events kept follow a :class:`~inference.data.schema.CatalogSchema`. A row is
invalid if a value is missing, not a finite number, a latitude outside [-90, 90], a longitude
outside [-180, 180], or a magnitude whose strength is negative or beyond 2**53.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

from inference.data.schema import (
    MAX_STRENGTH,
    CatalogSchema,
    check_catalog_path,
    invalid_rows_error,
)

__all__ = ["Catalog", "iter_csv_rows", "load_catalog", "not_utf8_error"]


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


def not_utf8_error(path, err: UnicodeDecodeError) -> ValueError:
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


def iter_csv_rows(path, schema: CatalogSchema):
    """The data rows of a CSV catalog, one at a time: ``(line number, parsed)`` where parsed is
    ``(lat, lon, mag, strength)`` or the reason the row is invalid (blank rows are skipped).

    Raises:
        ValueError: no header, a missing column, or a line that is not CSV (lazily, as read);
            UnicodeDecodeError: the file is not UTF-8 (see :func:`not_utf8_error`).
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError("the file is empty: expected a header row")
            cols = schema.find_columns(header)
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                yield reader.line_num, _parse_row(row, cols, schema.strength_scale)
        except csv.Error as err:  # a NUL byte, a cell beyond csv.field_size_limit(), ...
            raise ValueError(
                f"line {reader.line_num} cannot be read as CSV ({err}); is it a CSV file?"
            ) from None


def load_catalog(
    path: str | os.PathLike,
    schema: CatalogSchema | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> Catalog:
    """Read a CSV earthquake catalog.

    Args:
        path: the CSV file.
        schema: the columns, strength scale, bounding box and invalid-row rule
            (:class:`CatalogSchema`; None for its defaults).
        dtype: of the returned tensors.

    Raises:
        ValueError: missing file or columns, empty file, invalid rows, nothing left to fit.
    """
    schema = CatalogSchema() if schema is None else schema
    check_catalog_path(path)
    good, bad, num_rows = [], [], 0
    try:
        for line, parsed in iter_csv_rows(path, schema):
            num_rows += 1
            if isinstance(parsed, str):
                bad.append(f"line {line}: {parsed}")
            else:
                good.append(parsed)
    except UnicodeDecodeError as err:
        raise not_utf8_error(path, err) from None
    except ValueError as err:
        raise ValueError(f"catalog {str(path)!r}: {err}") from None
    if num_rows == 0:
        raise ValueError(f"catalog {str(path)!r} has a header but no data rows")
    if bad and not schema.drop_invalid:
        raise invalid_rows_error(path, bad)
    if not good:
        raise ValueError(f"catalog {str(path)!r} has no valid rows")
    table = torch.tensor(good, dtype=dtype)  # (rows, 4): lat, lon, mag, strength
    num_outside = 0
    if schema.bbox is not None:
        inside = schema.inside(table[:, 0], table[:, 1])
        num_outside = int((~inside).sum())
        table = table[inside]
        if table.shape[0] == 0:
            raise ValueError(f"no event of {str(path)!r} lies inside bbox {schema.bbox}")
    return Catalog(
        X=table[:, [1, 0]].contiguous(),
        S=table[:, 3].contiguous(),
        magnitude=table[:, 2].contiguous(),
        num_rows=num_rows,
        num_invalid=len(bad),
        num_outside=num_outside,
    )
