"""The metrics listener: a small HTTP server of its own, on a thread, never on the app's
port. ``GET /metrics`` is the Prometheus text format, ``GET /instances`` the report of
running app instances; anything else is 404.

It runs in the parent under ``--workers`` (whose main thread supervises) and in the
server process otherwise (whose main thread runs the event loop): a thread keeps a slow
scrape out of both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..config import metrics_address
from ..errors import StartupError
from .exposition import Exposition
from .snapshot import Snapshot

__all__ = ["MetricsListener"]

log = logging.getLogger("channelserver.error")


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixServer(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:  # HTTPServer's wants a host and port
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0


class _Handler(BaseHTTPRequestHandler):
    server: Any
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        listener: MetricsListener = self.server.listener
        path = self.path.partition("?")[0]
        try:
            if path == "/metrics":
                body, content_type = listener.exposition.render(), listener.exposition.content_type
            elif path == "/instances":
                body, content_type = listener.instances().encode(), "text/plain; charset=utf-8"
            else:
                body, content_type = b"Not found: /metrics and /instances are served here\n", "text/plain"
                self._answer(404, body, content_type)
                return
        except Exception:
            log.exception("Metrics listener: %s failed", path)
            self._answer(500, b"Internal error; see the server log\n", "text/plain")
            return
        self._answer(200, body, content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not logged
        pass


class MetricsListener:
    """Serve ``source()`` (the numbers now) and ``instances()`` (the report now)."""

    def __init__(self, address: str, source: Callable[[], Snapshot], instances: Callable[[], str]) -> None:
        self.exposition = Exposition(source)
        self.instances = instances
        where = metrics_address(address)
        try:
            if isinstance(where, str):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(where)
                self.httpd: ThreadingHTTPServer = _UnixServer(where, _Handler)  # type: ignore[arg-type]
                self.url = f"unix:{where}"
            else:
                family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
                server_class = type("_TCP6Server", (_TCPServer,), {"address_family": family})
                self.httpd = server_class(where, _Handler)
                host, port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
                shown = f"[{host}]" if ":" in host else host
                self.url = f"http://{shown}:{port}/metrics"
        except OSError as exc:
            raise StartupError(f"--metrics {address}: cannot listen: {exc.strerror or exc}") from None
        self.httpd.listener = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="channelserver-metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("Metrics on %s (pid %d)", self.url, os.getpid())

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(5)
        self.httpd.server_close()
