"""Anomalies reach on-call: from meter events through the processor to ClickHouse."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.publishing import meter_publisher
from chargewatch.stack import LocalStack
from infra.settings import load_settings
from schemas.records import EventKind, MeterEvent

pytestmark = pytest.mark.e2e

T0 = 1_795_400_000_000


def _event(kind: EventKind, minute: int, seq: int, energy: float | None = None,
           status: str | None = None, error: str | None = None) -> MeterEvent:
    time_ms = T0 + minute * 60_000
    return MeterEvent(event_id=f"e{seq}", station_id="CS-ANOM", connector_id=1, kind=kind,
                      event_time_ms=time_ms, receive_time_ms=time_ms + 100,
                      transaction_id="T-1" if kind is not EventKind.STATUS else None,
                      seq=seq if kind is not EventKind.STATUS else None, id_tag="TAG",
                      energy_wh=energy, power_w=0.0 if energy is not None else None,
                      status=status, error_code=error)


def test_zero_energy_session_and_fault_land_in_clickhouse(broker: EmbeddedBroker,
                                                          chdb_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"an{uuid.uuid4().hex[:8]}", "partitions": 2},
        clickhouse={"url": chdb_url, "database": f"an_{uuid.uuid4().hex[:8]}"})
    events = [_event(EventKind.STARTED, 0, 0, 5_000_000.0),
              _event(EventKind.METER, 1, 1, 5_000_000.0),
              _event(EventKind.ENDED, 10, 2, 5_000_000.0),
              _event(EventKind.STATUS, 11, 3, status="Faulted", error="GroundFailure")]
    with LocalStack(settings, tmp_path) as stack:
        publisher = meter_publisher(settings, stack.bootstrap_servers, create_topics=False)[0]
        publisher.publish("CS-ANOM", events)
        publisher.flush(30)
        stack.wait_for_sessions(1, timeout_s=90)
        database = settings.clickhouse.database
        deadline = time.monotonic() + 60
        kinds: set[str] = set()
        while time.monotonic() < deadline and not {"zero_energy_session",
                                                   "connector_faulted"} <= kinds:
            kinds = {row[0] for row in stack.client.query(
                f"SELECT kind FROM {database}.anomalies FINAL "
                f"WHERE station_id = 'CS-ANOM'").result_rows}
            time.sleep(0.3)
        assert {"zero_energy_session", "connector_faulted"} <= kinds
        [(evidence,)] = stack.client.query(
            f"SELECT evidence FROM {database}.anomalies FINAL "
            f"WHERE kind = 'connector_faulted'").result_rows
        assert "GroundFailure" in str(evidence)
