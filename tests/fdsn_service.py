"""A stand-in for the USGS FDSN event service, for a local server (:mod:`tests.http_server`):
its CSV columns, its ``count`` and ``query`` methods, ``limit``/``offset`` paging, its error
pages and its 204 for an empty page."""

from __future__ import annotations

HEADER = (
    "time,latitude,longitude,depth,mag,magType,nst,gap,dmin,rms,net,id,updated,place,type,"
    "horizontalError,depthError,magError,magNst,status,locationSource,magSource"
)


def usgs_rows(n: int) -> list[str]:
    """``n`` rows in the USGS service's CSV format, in time order (a quoted place included)."""
    return [
        f"2020-01-{1 + i // 24:02d}T{i % 24:02d}:36:20.534Z,{-30 + i * 0.7:.4f},"
        f"{120 + i * 0.9:.4f},10.0,{5.0 + (i % 7) * 0.3:.1f},mww,,25,1.2,0.8,us,us{i:08d},"
        f'2020-03-01T00:00:00.000Z,"{i} km SW of Somewhere, Region",earthquake,6.5,1.8,0.05,'
        "40,reviewed,us,us"
        for i in range(n)
    ]


def usgs_service(rows: list[str], failures: dict | None = None):
    """The service's answers; ``failures`` maps an offset to the statuses to give before the
    page itself (e.g. {21: [503]}: the second page fails once)."""
    failures = {k: list(v) for k, v in (failures or {}).items()}

    def answer(path: str, query: dict) -> tuple[int, bytes]:
        if "/nowhere/" in path:
            return 404, b"Error 404: Not Found\n"
        if path.endswith("/count"):
            return 200, f"{len(rows)}\n".encode()
        if not path.endswith("/query"):
            return 404, b"Error 404: Not Found\n"
        if query.get("starttime", "") >= query.get("endtime", "~"):
            return 400, b"Error 400: Bad Request\n\nstarttime must be before endtime\n"
        offset, limit = int(query["offset"]), int(query["limit"])
        pending = failures.get(offset)
        if pending:
            return pending.pop(0), b"Error 503: Service Unavailable\n"
        page = rows[offset - 1 : offset - 1 + limit]
        if not page:
            return 204, b""
        return 200, ("\n".join([HEADER, *page]) + "\n").encode()

    return answer
