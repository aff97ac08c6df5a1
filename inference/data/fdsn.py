"""Earthquake catalogs from an FDSN event web service (USGS's by default), as the CSV that
:func:`inference.data.load_catalog` and ``vilab catalog convert`` read.

The FDSN event service (FDSN web services specification, ``fdsnws-event`` 1.2) answers a query
of time window, magnitude and box with one row per event; the USGS service writes CSV
(``format=csv``: ``time, latitude, longitude, depth, mag, ...``) and caps an answer at 20,000
events. :func:`fetch_events` asks the service's ``count`` first, then pages through the events
in time order (``limit`` and ``offset``), retrying a failed page with exponential back-off, and
writes them as one CSV (the header once) atomically: an error or Ctrl-C leaves no file.

Plain HTTP through the standard library, not ObsPy's FDSN client: the CSV is what the project
reads already, and ObsPy (with its compiled dependencies) would be installed for one request.
"""

from __future__ import annotations

import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

from tqdm.auto import tqdm

from inference.data.atomic import replaced_atomically
from inference.data.schema import parse_bbox

__all__ = ["USGS_FDSN", "fetch_events"]

USGS_FDSN = "https://earthquake.usgs.gov/fdsnws/event/1"
MAX_PAGE = 20_000  # the USGS service's cap on the events of one answer
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # worth another try; any other 4xx is not


def _timestamp(name: str, text) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        raise ValueError(
            f"{name} must be a date or time in ISO 8601 (2020-01-31 or 2020-01-31T12:00:00), "
            f"got {text!r}"
        ) from None


def _query(start, end, min_magnitude, bbox) -> dict:
    """The FDSN query parameters, checked (one error naming the argument)."""
    begin, finish = _timestamp("start", start), _timestamp("end", end)
    if (begin.tzinfo is None) != (finish.tzinfo is None):
        raise ValueError("start and end must both have a time zone or both have none (UTC)")
    if not begin < finish:
        raise ValueError(f"start must be before end, got start {start!r} and end {end!r}")
    params = {"starttime": begin.isoformat(), "endtime": finish.isoformat()}
    if min_magnitude is not None:
        if isinstance(min_magnitude, bool) or not isinstance(min_magnitude, (int, float)) or not (
            math.isfinite(min_magnitude) and -2 <= min_magnitude <= 10
        ):  # fmt: skip
            raise ValueError(f"min_magnitude must be in [-2, 10], got {min_magnitude!r}")
        params["minmagnitude"] = repr(float(min_magnitude))
    if bbox is not None:
        lat_min, lat_max, lon_min, lon_max = (
            parse_bbox(bbox) if isinstance(bbox, str) else parse_bbox(",".join(map(str, bbox)))
        )
        params.update(minlatitude=lat_min, maxlatitude=lat_max, minlongitude=lon_min,
                      maxlongitude=lon_max)  # fmt: skip
    params["orderby"] = "time-asc"  # pages in a fixed order: offset then means one thing
    return params


def _get(url: str, *, retries: int, backoff: float, timeout: float) -> tuple[int, bytes]:
    """``(status, body)`` of one GET, with ``retries`` more tries after a network error or a
    status in ``_RETRY_STATUS``, waiting ``backoff * 2**i`` seconds before try ``i + 1``."""
    host = urllib.parse.urlsplit(url).netloc
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            body = err.read().decode("utf-8", "replace").strip()
            if err.code not in _RETRY_STATUS or attempt == retries:
                detail = next((line for line in body.splitlines() if line.strip()), err.reason)
                raise ValueError(
                    f"the FDSN service at {host} answered HTTP {err.code} ({detail.strip()[:200]})"
                    + (f" after {retries + 1} tries" if err.code in _RETRY_STATUS else "")
                ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            if attempt == retries:
                reason = getattr(err, "reason", err)
                raise ValueError(
                    f"cannot reach the FDSN service at {host} ({reason}) after {retries + 1} "
                    "tries: check the network, or give another service with --url"
                ) from None
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def fetch_events(
    out_path: str | os.PathLike,
    *,
    start,
    end,
    min_magnitude: float | None = None,
    bbox=None,
    url: str = USGS_FDSN,
    page_size: int = MAX_PAGE,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> dict:
    """Every event of the service in ``[start, end)`` (ISO 8601; UTC unless a zone is given)
    with magnitude >= ``min_magnitude`` inside ``bbox`` (``(lat_min, lat_max, lon_min,
    lon_max)`` or ``"lat_min,lat_max,lon_min,lon_max"``, degrees), written to ``out_path`` as
    the service's CSV.

    Args:
        url: the service's base, e.g. ``https://earthquake.usgs.gov/fdsnws/event/1`` (its
            ``count`` and ``query`` methods are called).
        page_size: events per request, at most 20,000 (the USGS cap).
        retries, backoff, timeout: further tries of a failed request, the first wait between
            tries (doubling), and seconds before a request is given up.

    Returns:
        ``{"url", "query", "num_events", "num_pages"}``.

    Raises:
        ValueError: a bad argument (named), no event matching, a refused query (the service's
            words), or a service that cannot be reached after the retries. Nothing is written.
    """
    params = _query(start, end, min_magnitude, bbox)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not (
        1 <= page_size <= MAX_PAGE
    ):  # fmt: skip
        raise ValueError(f"page_size must be an integer in [1, {MAX_PAGE}], got {page_size!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ValueError(f"retries must be an integer in [0, 20], got {retries!r}")
    for name, value in (("backoff", backoff), ("timeout", timeout)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    base = str(url).rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    net = {"retries": retries, "backoff": backoff, "timeout": timeout}

    status, body = _get(f"{base}/count?{urllib.parse.urlencode(params)}", **net)
    try:
        total = 0 if status == 204 else int(body.decode("ascii").strip())
    except ValueError:
        raise ValueError(
            f"the FDSN service at {base} answered the count with {body[:80]!r}, not a number"
        ) from None
    if total == 0:
        raise ValueError(f"no event matches the query {params} at {base}")

    pages = math.ceil(total / page_size)
    header = None
    written = 0
    with replaced_atomically(Path(out_path)) as tmp, open(tmp, "wb") as out, tqdm(
        total=total, desc="fetch", unit="event", unit_scale=True, leave=False,
        disable=not progress,
    ) as bar:  # fmt: skip
        for page in range(pages):
            # FDSN offsets count from 1
            query = {**params, "format": "csv", "limit": page_size, "offset": 1 + page * page_size}
            status, body = _get(f"{base}/query?{urllib.parse.urlencode(query)}", **net)
            text = body.decode("utf-8") if status != 204 else ""
            lines = [line + "\n" for line in text.splitlines()]
            if not lines:
                break  # fewer events than counted (some were deleted meanwhile)
            if header is None:
                header = lines[0]
                out.write(header.encode("utf-8"))
            elif lines[0] != header:
                raise ValueError(
                    f"page {page + 1} of {base} has the columns {lines[0].strip()!r}, not "
                    f"{header.strip()!r}"
                )
            rows = [line for line in lines[1:] if line.strip()]
            out.write("".join(rows).encode("utf-8"))
            written += len(rows)
            bar.update(len(rows))
    return {"url": base, "query": params, "num_events": written, "num_pages": pages}
