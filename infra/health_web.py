"""A small web port answering `/health`, `/ready` and `/metrics`, for a worker that has no web
server of its own (the OCPP gateway: its port speaks websockets to chargers)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from infra.health import HealthTracker
from infra.metrics import CONTENT_TYPE

log = logging.getLogger("chargewatch.web")


class HealthServer:
    """Serves the tracker's verdict; `not_ready()` returns why the worker is not ready yet
    (None once it is)."""

    def __init__(self, host: str, port: int, tracker: HealthTracker,
                 registry: CollectorRegistry, not_ready: Callable[[], str | None]) -> None:
        self.tracker = tracker
        self.registry = registry
        self.not_ready = not_ready
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        if path == "/metrics":
            return HTTPStatus.OK, CONTENT_TYPE, generate_latest(self.registry)
        if path not in ("/health", "/ready"):
            return HTTPStatus.NOT_FOUND, "application/json", b'{"error": "no such path"}'
        report = self.tracker.check()
        reasons = list(report.reasons)
        if path == "/ready" and (why := self.not_ready()) is not None:
            reasons.append(why)
        body = report.body(reasons=reasons)
        status = HTTPStatus.OK if not reasons else HTTPStatus.SERVICE_UNAVAILABLE
        return status, "application/json", json.dumps(body).encode()

    def start(self) -> HealthServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-web",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()


def _handler_for(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("web: " + format, *args)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, content_type, payload = server.answer(self.path.split("?", 1)[0])
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
