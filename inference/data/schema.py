"""How a geographic earthquake catalog's rows become the model's data: :class:`CatalogSchema`,
the one set of options shared by the CSV reader (:func:`inference.data.load_catalog`), the
Parquet converter (:func:`inference.data.convert_csv`) and the Parquet reader
(:class:`inference.data.ParquetCatalog`), with the checks every reader applies.

Locations become ``X = (longitude, latitude)`` in degrees (planar: the model ignores the sphere,
so select regions that do not cross the antimeridian with ``bbox``); strengths become
``S = round(strength_scale * magnitude)``, an integer in [0, 2**53] (float64 holds every such
integer exactly). Scale 1 turns M 5.5-9.1 into 6-9; scale 10 into 55-91.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from analytic.earthquake import MAX_STRENGTH

__all__ = [
    "LATITUDE_NAMES",
    "LONGITUDE_NAMES",
    "MAGNITUDE_NAMES",
    "MAX_STRENGTH",
    "CatalogSchema",
    "check_catalog_path",
    "invalid_rows_error",
    "parse_bbox",
]

LATITUDE_NAMES = ("latitude", "lat")
LONGITUDE_NAMES = ("longitude", "lon", "long", "lng")
MAGNITUDE_NAMES = ("magnitude", "mag")
_MAX_LISTED = 5


@dataclass(frozen=True)
class CatalogSchema:
    """Which columns hold an event's latitude, longitude and magnitude, and which events to keep.

    Attributes:
        lat_col, lon_col, mag_col: column names; None detects the first header that matches,
            case-insensitively, one of ``LATITUDE_NAMES``, ``LONGITUDE_NAMES``,
            ``MAGNITUDE_NAMES`` (this fits the USGS ``Latitude/Longitude/Magnitude`` and the
            ``latitude/longitude/mag`` layouts).
        strength_scale: S = round(strength_scale * magnitude); a finite number > 0.
        bbox: ``(lat_min, lat_max, lon_min, lon_max)`` in degrees: keep the events with
            lat_min <= lat <= lat_max and lon_min <= lon <= lon_max; None keeps all.
        drop_invalid: skip rows with missing, non-numeric or out-of-range values (counted);
            by default such rows stop the read, the first ones listed.

    Raises:
        ValueError: a strength scale that is not finite and > 0; a bbox that is not four finite
            numbers with -90 <= lat_min < lat_max <= 90 and -180 <= lon_min < lon_max <= 180.
    """

    lat_col: str | None = None
    lon_col: str | None = None
    mag_col: str | None = None
    strength_scale: float = 1.0
    bbox: tuple[float, float, float, float] | None = None
    drop_invalid: bool = False

    def __post_init__(self) -> None:
        scale = self.strength_scale
        if isinstance(scale, bool) or not (
            isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0
        ):
            raise ValueError(f"strength_scale must be a finite number > 0, got {scale!r}")
        if self.bbox is not None:
            object.__setattr__(self, "bbox", _checked_bbox(self.bbox, self.bbox))

    def find_columns(self, header: list[str], alternative: str = "") -> tuple[int, int, int]:
        """The indices in ``header`` of the latitude, longitude and magnitude columns.

        Raises:
            ValueError: a named column that is not there, or none detected; ``alternative``
                (e.g. ``", or the planar columns [...]"``) is added to what was looked for.
        """
        wanted = (
            (self.lat_col, LATITUDE_NAMES, "latitude"),
            (self.lon_col, LONGITUDE_NAMES, "longitude"),
            (self.mag_col, MAGNITUDE_NAMES, "magnitude"),
        )
        return tuple(
            _find_column(header, given, names, what, alternative) for given, names, what in wanted
        )

    def inside(self, lat, lon):
        """Whether each event (floats or tensors of degrees) lies in ``bbox`` (all do without)."""
        if self.bbox is None:
            return True
        lat_min, lat_max, lon_min, lon_max = self.bbox
        return (lat >= lat_min) & (lat <= lat_max) & (lon >= lon_min) & (lon <= lon_max)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``"lat_min,lat_max,lon_min,lon_max"`` (degrees) with clear errors."""
    return _checked_bbox(str(text).split(","), text)


def _checked_bbox(values, text) -> tuple[float, float, float, float]:
    """``values`` as a bbox ``(lat_min, lat_max, lon_min, lon_max)``, checked; ``text`` is what
    the user wrote, quoted in the error."""
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        values = ()
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
    return values


def _find_column(header, given, candidates, what: str, alternative: str) -> int:
    if given is not None:
        if given not in header:
            raise ValueError(f"{what} column {given!r} not found; the file has columns {header}")
        return header.index(given)
    lowered = [h.strip().lower() for h in header]
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    raise ValueError(
        f"no {what} column found (looked for {list(candidates)}, case-insensitively"
        f"{alternative}); the file has columns {header}; name it with --{what[:3]}-col"
    )


def invalid_rows_error(path, bad: list[str]) -> ValueError:
    """The error for a catalog with invalid rows: their count and the first few reasons."""
    listed = "; ".join(bad[:_MAX_LISTED])
    more = f" (and {len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
    return ValueError(
        f"catalog {str(path)!r} has {len(bad)} invalid row(s): {listed}{more}. "
        "Fix them or pass --drop-invalid to skip them"
    )


def check_catalog_path(path, what: str = "CSV") -> None:
    """Raise ValueError if ``path`` is a folder or does not exist."""
    if os.path.isdir(path):
        raise ValueError(f"catalog {str(path)!r} is a folder, not a {what} file")
    if not os.path.isfile(path):
        raise ValueError(f"catalog {str(path)!r} does not exist")
