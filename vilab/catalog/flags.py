"""``vilab catalog``: real catalogs fetched, and catalogs as Parquet files, for catalogs too
large for memory.

    vilab catalog fetch usgs.csv --start 2020-01-01 --end 2021-01-01 --min-magnitude 5
    vilab catalog convert events.csv events.parquet     # the CSV reader's columns and rules
    vilab catalog simulate big.parquet --num-events 1e8  # from the model, chunk by chunk

fetch pages through an FDSN event service (USGS's by default) and writes its CSV; convert and
simulate write one row group per ``--chunk-size`` events. All three write through a temporary
file renamed at the end (an error or Ctrl-C leaves nothing behind), with a progress bar.
``vilab earthquake --data FILE.parquet --chunk-size N`` then fits one chunk at a time.
"""

from __future__ import annotations

import argparse
import math

from vilab.earthquake.flags import add_model_arguments
from vilab.flags import add_catalog_arguments, argparse_type, seed

__all__ = ["DEFAULT_CHUNK", "add_arguments", "count"]

DEFAULT_CHUNK = 1 << 20


def count(text: str) -> int:
    """An integer >= 1, also written as a float that is an integer: ``1e8``, ``2.5e6``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected an integer >= 1 (1e8 allowed), got {text!r}") from None
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        raise ValueError(f"expected an integer >= 1 (1e8 allowed), got {text!r}")
    return int(value)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chunk-size",
        type=argparse_type(count),
        default=DEFAULT_CHUNK,
        metavar="N",
        help=f"events per row group, the unit a streamed fit reads (default {DEFAULT_CHUNK})",
    )
    p.add_argument("--json", metavar="FILE", help="also write the summary here (JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``fetch``, ``convert`` and ``simulate``, each with its own flags."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = sub.add_parser(
        "fetch",
        help="a real catalog from the USGS (or any FDSN) event service, as CSV",
        description="Fetch every event of a time window (and magnitude, box) from an FDSN "
        "event service, USGS's by default, paging past its 20,000-event cap, retrying failed "
        "requests, into one CSV that `vilab earthquake --data` and `vilab catalog convert` "
        "read.",
    )
    fetch.add_argument("csv", metavar="OUT.csv", help="the CSV file to write")
    fetch.add_argument("--start", required=True, help="first time, ISO 8601 (2020-01-01), UTC")
    fetch.add_argument("--end", required=True, help="end time (excluded), ISO 8601, UTC")
    fetch.add_argument("--min-magnitude", type=float, help="smallest magnitude (default: all)")
    fetch.add_argument(
        "--bbox",
        metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
        help="only events inside this box (degrees)",
    )
    fetch.add_argument(
        "--url",
        help="the FDSN event service (default: the USGS's, "
        "https://earthquake.usgs.gov/fdsnws/event/1)",
    )
    fetch.add_argument(
        "--page-size",
        type=int,
        help="events per request, at most 20000 (default: 20000, the USGS's cap)",
    )
    fetch.add_argument("--retries", type=int, default=3, help="more tries of a failed request (3)")
    fetch.add_argument("--json", metavar="FILE", help="also write the summary here (JSON)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    conv = sub.add_parser(
        "convert",
        help="CSV catalog -> Parquet (columns latitude, longitude, magnitude)",
        description="Convert a CSV catalog to Parquet, streaming it: the columns are found and "
        "the rows checked as `vilab earthquake --data FILE.csv` does; invalid rows stop the "
        "conversion unless --drop-invalid. The magnitudes are stored (the strength scale is "
        "chosen again when the file is read; here it only checks the rows).",
    )
    conv.add_argument("csv", metavar="IN.csv", help="the CSV catalog (header row, UTF-8)")
    conv.add_argument("parquet", metavar="OUT.parquet", help="the Parquet file to write")
    add_catalog_arguments(
        conv,
        scale_help="check rows as for strength S = round(scale * magnitude) (default 1)",
        bbox_help="write only events inside this box (degrees)",
    )
    _add_common(conv)
    sim = sub.add_parser(
        "simulate",
        help="a planar catalog (columns x1, x2, s) of any size from the model",
        description="Draw a catalog from the earthquake mixture's prior predictive, one chunk "
        "at a time (memory: one chunk), into Parquet columns x1, x2 (model coordinates) and "
        "s (integer strengths). The summary holds the true centres and rates.",
    )
    sim.add_argument("parquet", metavar="OUT.parquet", help="the Parquet file to write")
    sim.add_argument(
        "--num-events",
        type=argparse_type(count),
        default=10**6,
        metavar="N",
        help="events to draw; 1e8 allowed (default 1e6)",
    )
    add_model_arguments(sim)
    sim.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="storage type of the coordinates x1, x2 (default float64; float32 halves the file)",
    )
    sim.add_argument(
        "--seed",
        type=argparse_type(seed),
        default=0,
        help="seed of the draws; same seed, same file (0)",
    )
    _add_common(sim)
