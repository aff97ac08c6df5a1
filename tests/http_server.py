"""A local HTTP server for tests of what downloads: it answers on 127.0.0.1 only, from a
function of the request, so no test touches the network."""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path, query as a dict of str) -> (status, body bytes)
Answer = Callable[[str, dict], tuple[int, bytes]]


@contextlib.contextmanager
def serving(answer: Answer) -> Iterator[tuple[str, list]]:
    """Serve ``answer`` on a free port; yields (base URL, the list of requests seen)."""
    seen: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            seen.append((parts.path, query))
            status, body = answer(parts.path, query)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
