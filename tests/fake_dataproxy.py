"""A local fake of the EBRAINS data-proxy, with injectable faults, for download tests.

Serves a folder in the EBRAINS layout on 127.0.0.1 (a free port):

* ``GET /api/v1/datasets/<id>?limit=&marker=`` — the listing, paginated like the real API
  (names after ``marker``, at most ``limit``; ``page_cap`` caps a page below the client's
  ``limit`` as real object stores do; ``ignore_marker`` serves the first page again and again);
* ``GET /api/v1/datasets/<id>/<name>`` — a 302 redirect to ``/store/<name>``, the "object store";
* ``GET /store/<name>`` — the bytes, with ``Range`` support unless switched off (a range
  that starts at or past the end is answered 416, as object stores do).

Faults are queued per object name and consumed one per request to the store, so
"fail twice, then serve" is ``faults["raw/mv01.nii.gz"] = ["503", "reset"]``:
``500``/``503``/``429``/``404`` (``503:2`` adds ``Retry-After: 2``), ``reset`` (connection
closed mid-body), ``truncate`` (short body with the full Content-Length),
``wrongbytes`` (one byte flipped), ``trickle`` (stalls past the client's read timeout).
``throttle_bps`` (bytes per second, ``None`` = full speed) serves every store body slowly,
in small pieces, so a test can act while a download is under way.
Every request is recorded (path, headers) for assertions. Only ever binds loopback.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DATASET_ID = "bf268b89-1420-476b-b428-b85a913eb523"


def write_release(root: Path, volumes, size_xy: int, max_z: int, seed: int = 3) -> Path:
    """A tiny release in the EBRAINS layout (raw/, seg/, json/ of synthetic volumes and a
    licence stand-in), to serve or to use as a ``dir`` source."""
    from minivess_bundle.core.volumes import EBRAINS_LICENCE
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    for vol in volumes:
        write_synthetic_volume(root, vol, seed=seed, size_xy=size_xy, max_z=max_z)
    (root / EBRAINS_LICENCE).write_bytes(b"%PDF-1.4 licence stand-in\n" * 50)
    return root


class FakeDataProxy:
    def __init__(self, root: Path, dataset_id: str = DATASET_ID, md5_hashes: bool = True) -> None:
        self.root = Path(root)
        self.dataset_id = dataset_id
        self.md5_hashes = md5_hashes
        self.range_support = True
        self.hidden: set[str] = set()
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.listing_faults: list[str] = []
        self.requests: list[dict] = []
        self.trickle_seconds = 3.0
        self.throttle_bps: float | None = None
        self.page_cap: int | None = None
        self.ignore_marker = False
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle
    def __enter__(self) -> FakeDataProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def api_base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api"

    # -- content
    def names(self) -> list[str]:
        files = [p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")]
        return sorted(p.relative_to(self.root).as_posix() for p in files)

    def entry(self, name: str) -> dict:
        data = (self.root / name).read_bytes()
        digest = hashlib.md5(data).hexdigest() if self.md5_hashes else "etag-" + name
        return {
            "name": name,
            "bytes": len(data),
            "hash": digest,
            "last_modified": "2023-03-01T00:00:00.000000",
            "content_type": "application/gzip",
        }

    def store_requests(self, name: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == f"/store/{name}"]

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server API)
                url = urlsplit(self.path)
                path = unquote(url.path)
                with proxy.lock:
                    proxy.requests.append(
                        {"path": path, "query": url.query, "headers": dict(self.headers)}
                    )
                prefix = f"/api/v1/datasets/{proxy.dataset_id}"
                if path == prefix:
                    return self.listing(parse_qs(url.query))
                if path.startswith(prefix + "/"):
                    name = path[len(prefix) + 1 :]
                    return self.reply(302, b"", {"Location": f"/store/{name}"})
                if path.startswith("/store/"):
                    return self.store(path[len("/store/") :])
                return self.reply(404, b"no such route")

            def do_HEAD(self):  # noqa: N802 (http.server API)
                path = unquote(urlsplit(self.path).path)
                with proxy.lock:
                    proxy.requests.append(
                        {"path": path, "headers": dict(self.headers), "method": "HEAD"}
                    )
                file = proxy.root / path[len("/store/") :]
                if not path.startswith("/store/") or not file.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(file.stat().st_size))
                self.end_headers()

            def reply(self, status, body, headers=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def listing(self, query):
                with proxy.lock:
                    fault = proxy.listing_faults.pop(0) if proxy.listing_faults else None
                if fault:
                    return self.reply(int(fault), b"listing fault")
                limit = int(query.get("limit", ["50"])[0])
                if proxy.page_cap is not None:
                    limit = min(limit, proxy.page_cap)
                marker = "" if proxy.ignore_marker else query.get("marker", [""])[0]
                names = [n for n in proxy.names() if n not in proxy.hidden and n > marker]
                page = [proxy.entry(n) for n in names[:limit]]
                body = json.dumps(
                    {"objects": page, "container": f"d-{proxy.dataset_id}", "prefix": ""}
                ).encode()
                self.reply(200, body, {"Content-Type": "application/json"})

            def store(self, name):
                if "Authorization" in self.headers:
                    return self.reply(400, b"Authorization header reached the object store")
                file = proxy.root / name
                if not file.is_file():
                    return self.reply(404, b"not found")
                with proxy.lock:
                    fault = proxy.faults[name].pop(0) if proxy.faults[name] else None
                data = file.read_bytes()
                if fault and fault.split(":")[0] in {"500", "503", "429", "404", "408"}:
                    code, _, after = fault.partition(":")
                    return self.reply(int(code), b"fault", {"Retry-After": after} if after else {})
                if fault == "wrongbytes":
                    data = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
                start = 0
                span = self.headers.get("Range", "")
                status, headers = 200, {}
                if span.startswith("bytes=") and proxy.range_support:
                    start = int(span[6:].split("-")[0])
                    if start >= len(data):  # as object stores answer (RFC 9110 15.5.17)
                        return self.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if proxy.range_support else "none")
                self.end_headers()
                if fault in {"reset", "truncate"}:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if fault == "reset":
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                        )
                    self.close_connection = True
                    return
                if fault == "trickle":
                    self.wfile.write(body[:100])
                    self.wfile.flush()
                    time.sleep(proxy.trickle_seconds)
                    self.close_connection = True
                    return
                if proxy.throttle_bps:
                    return self.slowly(body, proxy.throttle_bps)
                self.wfile.write(body)

            def slowly(self, body, bytes_per_s, piece=4096):
                try:
                    for start in range(0, len(body), piece):
                        self.wfile.write(body[start : start + piece])
                        self.wfile.flush()
                        time.sleep(piece / bytes_per_s)
                except (BrokenPipeError, ConnectionResetError):  # the client went away
                    self.close_connection = True

        return Handler
