"""The sink worker: the Kafka → ClickHouse loop plus a small web endpoint.

The endpoint exists because an embedded chDB folder can be open in one process only: while
this worker holds it, lookups and reports from other processes come through here.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import generate_latest

from chargewatch.lookup import ClickHouseSource
from chargewatch.render import plain
from infra.errors import UsageError
from infra.health import HealthTracker, KafkaProbe
from infra.kafka_config import client_config
from infra.metrics import CONTENT_TYPE, sink_registry
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import Codec
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.runner import SinkRunner, StepHook
from sinks.status_sink import load_stations

log = logging.getLogger("chargewatch.sink")


class SinkService:
    """Owns one ClickHouse client, the SinkRunner thread and the web endpoint."""

    def __init__(self, settings: Settings, bootstrap_servers: str, web_port: int | None = None,
                 client: Any | None = None, on_step: StepHook | None = None) -> None:
        database = settings.clickhouse.database
        self.client = client or connect(settings.clickhouse.url.get_secret_value())
        migrate(self.client, database, cluster=settings.clickhouse.cluster)
        registry = settings.station_registry()
        if registry is not None:  # model/firmware for the station-health reports
            load_stations(self.client, database, registry)
        topics = Topics(settings.kafka.namespace)
        self.health = HealthTracker(settings.health.unreachable_s, settings.sink.stall_s)
        kafka_conf = client_config(settings.kafka, bootstrap_servers)
        self._probe = KafkaProbe(kafka_conf, self.health, settings.health.probe_timeout_s)
        self._probe_every_s = settings.health.probe_every_s
        self.runner = SinkRunner(
            consumer_conf={
                **kafka_conf,
                "group.id": f"{settings.kafka.namespace}-sink",
                "session.timeout.ms": str(settings.kafka.session_timeout_ms),
                "fetch.wait.max.ms": settings.kafka.fetch_max_wait_ms,
            },
            sessions_topic=topics.sessions_completed,
            dead_letters_topic=topics.dead_letters,
            client=self.client,
            database=database,
            codec=Codec(settings.kafka.schema_registry_url),
            batch_size=settings.sink.batch_size,
            batch_ms=settings.sink.batch_ms,
            coalesce=settings.sink.coalesce,
            anomalies_topic=topics.anomalies,
            status_topic=topics.connector_status,
            updates_topic=topics.session_updates,
            on_step=on_step,
            health=self.health,
        )
        self.source = ClickHouseSource(self.client, database)
        self.metrics = sink_registry(self.runner.stats_dict, self.health)
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        port = settings.sink.web_port if web_port is None else web_port
        self._server = ThreadingHTTPServer((settings.sink.web_host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._web_thread: threading.Thread | None = None

    @property
    def web_port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SinkService:
        self._thread = threading.Thread(target=self.runner.run, args=(self.stop_event,),
                                        name="sink", daemon=True)
        self._thread.start()
        self._web_thread = threading.Thread(target=self._server.serve_forever, name="sink-web",
                                            daemon=True)
        self._web_thread.start()
        self._probe.start(self.stop_event, self._probe_every_s)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread:
            self._thread.join(timeout=30)
        self._server.shutdown()
        self._server.server_close()

    def wait(self) -> None:
        while self._thread and self._thread.is_alive():
            self._thread.join(timeout=1)


def _dead_letters(service: SinkService, params: dict[str, str]) -> dict[str, Any]:
    """`/dead-letters?since_ms=&limit=`: what `chargewatch dead-letters` reads while this
    worker holds the chDB folder (bytes in base64)."""
    from chargewatch.dead_letters_cli import query_dead_letters, to_wire

    letters, total = query_dead_letters(service.client, service.source.database,
                                        int(params.get("since_ms", 0)),
                                        int(params.get("limit", 50)))
    return {"letters": [to_wire(letter) for letter in letters], "total": total}


def _query(service: SinkService, parts: list[str], params: dict[str, str],
           ) -> tuple[HTTPStatus, Any]:
    """The answer to a lookup or report path: sessions, CDRs, dead letters, reports."""
    if len(parts) == 2 and parts[0] == "sessions":
        row = service.source.session(parts[1])
        if row is None:
            return HTTPStatus.NOT_FOUND, {"error": "no such session"}
        return HTTPStatus.OK, {k: plain(v) for k, v in row.items()}
    if len(parts) == 4 and parts[::2] == ["stations", "transactions"]:
        rows = service.source.transaction(parts[1], parts[3])
        return HTTPStatus.OK, [{k: plain(v) for k, v in row.items()} for row in rows]
    if len(parts) == 2 and parts[0] == "cdrs":
        from chargewatch.cdr_cli import cdr_records

        records = cdr_records(service.client, service.source.database, parts[1])
        return HTTPStatus.OK, [{k: plain(v) for k, v in r.items()} for r in records]
    if parts == ["dead-letters"]:
        return HTTPStatus.OK, _dead_letters(service, params)
    if len(parts) == 2 and parts[0] == "reports":
        report = service.source.report(parts[1], **params)
        return HTTPStatus.OK, {"columns": report.columns,
                               "rows": [[plain(v) for v in r] for r in report.rows]}
    return HTTPStatus.NOT_FOUND, {"error": f"no such path /{'/'.join(parts)}"}


def _health(service: SinkService, ready: bool) -> tuple[HTTPStatus, dict[str, Any]]:
    """`/health`: 503 with the reasons when Kafka or ClickHouse fails or commits stall with
    lag (infra/health.py); `/ready` also while the loop is not running."""
    report = service.health.check()
    reasons = list(report.reasons)
    if ready and not service.running:
        reasons.append("the sink loop is not running")
    ok = not reasons
    body = report.body(reasons=reasons, **service.runner.stats_dict())
    if ready:
        body["ready"] = ok
    return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), body


def _handler_for(service: SinkService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("web: " + format, *args)

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body, default=plain).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/") if p]
            params = dict(urllib.parse.parse_qsl(url.query))
            try:
                if parts in (["health"], ["ready"]):
                    self._send(*_health(service, ready=parts == ["ready"]))
                elif parts == ["metrics"]:
                    payload = generate_latest(service.metrics)
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", CONTENT_TYPE)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self._send(*_query(service, parts, params))
            except UsageError as exc:  # a parameter it cannot use: the message names it
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - a failed request must not kill the worker
                log.warning("web: %s failed: %s", url.path, exc)
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})

    return Handler
