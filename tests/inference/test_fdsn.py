"""Catalogs from an FDSN event service (issue #37), against a local server that answers as
the USGS service does (its CSV columns, its ``count`` and ``query`` methods, ``limit`` and
``offset`` paging, its error pages) -- never the network."""

from __future__ import annotations

import pytest

from inference.data import load_catalog
from inference.data.fdsn import fetch_events
from tests.fdsn_service import HEADER, usgs_rows, usgs_service
from tests.http_server import serving


def test_pages_past_the_cap_into_one_csv_the_reader_reads(tmp_path):
    """45 events in pages of 20: three requests in time order (offsets 1, 21, 41), the
    header once, every row once and in order; ``load_catalog`` reads the file (longitude,
    latitude, magnitude found by name) and so does ``vilab earthquake --data``."""
    rows = usgs_rows(45)
    out = tmp_path / "usgs.csv"
    with serving(usgs_service(rows)) as (base, seen):
        summary = fetch_events(out, start="2020-01-01", end="2020-02-01", min_magnitude=4.5,
                               bbox="-60,60,100,180", url=f"{base}/fdsnws/event/1",
                               page_size=20, progress=False)  # fmt: skip
    assert summary["num_events"] == 45 and summary["num_pages"] == 3
    assert out.read_text().splitlines() == [HEADER, *rows]
    queries = [q for path, q in seen if path.endswith("/query")]
    assert [q["offset"] for q in queries] == ["1", "21", "41"]
    assert {q["orderby"] for q in queries} == {"time-asc"} and queries[0]["format"] == "csv"
    assert (queries[0]["starttime"], queries[0]["endtime"]) == (
        "2020-01-01T00:00:00", "2020-02-01T00:00:00")  # fmt: skip
    assert (queries[0]["minmagnitude"], queries[0]["minlatitude"]) == ("4.5", "-60.0")
    catalog = load_catalog(out)
    assert catalog.X.shape == (45, 2)
    assert catalog.X[0].tolist() == [120.0, -30.0]


def test_a_failed_page_is_retried_and_the_file_is_whole(tmp_path):
    rows = usgs_rows(30)
    out = tmp_path / "usgs.csv"
    with serving(usgs_service(rows, failures={21: [503, 502]})) as (base, seen):
        fetch_events(out, start="2020-01-01", end="2020-02-01", url=base, page_size=20,
                     retries=2, backoff=0, progress=False)  # fmt: skip
    assert [q["offset"] for p, q in seen if p.endswith("/query")] == ["1", "21", "21", "21"]
    assert out.read_text().splitlines() == [HEADER, *rows]


def test_a_page_that_keeps_failing_leaves_no_file_and_the_earlier_one(tmp_path):
    out = tmp_path / "usgs.csv"
    out.write_text("earlier\n")
    with serving(usgs_service(usgs_rows(30), failures={21: [503] * 5})) as (base, _):
        with pytest.raises(ValueError, match=r"answered HTTP 503 \(Error 503: Service Unavail"
                                             r"able\) after 2 tries"):  # fmt: skip
            fetch_events(out, start="2020-01-01", end="2020-02-01", url=base, page_size=20,
                         retries=1, backoff=0, progress=False)  # fmt: skip
    assert out.read_text() == "earlier\n" and not list(tmp_path.glob(".*.tmp"))


def test_offline_is_one_clear_error_and_nothing_is_written(tmp_path):
    with serving(usgs_service([])) as (base, _):
        pass  # the port is closed again: nothing listens there
    out = tmp_path / "usgs.csv"
    with pytest.raises(ValueError) as info:
        fetch_events(out, start="2020-01-01", end="2020-02-01", url=base, retries=1, backoff=0,
                     progress=False)  # fmt: skip
    message = str(info.value)
    assert message.startswith(f"cannot reach the FDSN service at {base[7:]} (")
    assert message.endswith("after 2 tries: check the network, or give another service with "
                            "--url")  # fmt: skip
    assert not out.exists()


def test_the_services_refusal_and_an_empty_answer_are_named(tmp_path):
    out = tmp_path / "usgs.csv"
    with serving(usgs_service([])) as (base, _):
        with pytest.raises(ValueError, match="no event matches the query"):
            fetch_events(out, start="2020-01-01", end="2020-02-01", url=base, progress=False)
        with pytest.raises(ValueError, match=r"answered HTTP 404 \(Error 404: Not Found\)$"):
            fetch_events(out, start="2020-01-01", end="2020-02-01", url=f"{base}/nowhere/x",
                         progress=False)  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start": "2020-13-01"}, r"start must be a date or time in ISO 8601.*'2020-13-01'"),
        ({"end": "2019-01-01"}, "start must be before end"),
        ({"min_magnitude": 11.0}, r"min_magnitude must be in \[-2, 10\], got 11.0"),
        ({"bbox": "10,0,0,10"}, "bbox latitudes must satisfy"),
        ({"page_size": 20001}, r"page_size must be an integer in \[1, 20000\], got 20001"),
        ({"retries": -1}, r"retries must be an integer in \[0, 20\], got -1"),
        ({"url": "ftp://example.org"}, "url must start with http:// or https://"),
    ],
)
def test_bad_arguments_are_named_before_any_request(tmp_path, kwargs, message):
    args = {"start": "2020-01-01", "end": "2020-02-01", "url": "http://127.0.0.1:9", **kwargs}
    with pytest.raises(ValueError, match=message):
        fetch_events(tmp_path / "x.csv", progress=False, **args)
