"""A session whose stop never comes is closed by the running worker's expiry timer.

Batches close such sessions only when their own station speaks again; a station that goes
quiet relies on the timer, which reads the worker's table through the agent adapter (the
pure rules are tested in tests/unit/test_batch.py and tests/unit/test_quiet.py). In the
first test its neighbour on the same partition advances the partition's event clock past
the inactivity limit; in the second the station is alone on its partition, so only the
worker's wall clock moves: `stuck_session` and then the close arrive after the configured
times (small here), never before, within generous bounds.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.stack import LocalStack
from infra.clock import now_ms
from infra.settings import load_settings
from schemas.records import EventKind, MeterEvent
from tests.e2e.harness import KeyedSender

pytestmark = pytest.mark.e2e

T0 = 1_795_392_000_000
HOUR = 3_600_000


def _event(station: str, kind: EventKind, at_ms: int, energy_wh: float, seq: int) -> MeterEvent:
    return MeterEvent(event_id=f"{station}:{seq}", station_id=station, connector_id=1,
                      kind=kind, event_time_ms=at_ms, receive_time_ms=at_ms + 100,
                      transaction_id=f"{station}-T1", seq=seq, id_tag="TAG",
                      energy_wh=energy_wh, power_w=11_000.0)


def test_the_timer_closes_a_quiet_stations_session(broker: EmbeddedBroker, chdb_url: str,
                                                    tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"x{uuid.uuid4().hex[:8]}", "partitions": 1},
        clickhouse={"url": chdb_url, "database": f"x_{uuid.uuid4().hex[:8]}"},
        processor={"expire_every_s": 1.0},
    )
    with LocalStack(settings, tmp_path) as stack:
        sender = KeyedSender(stack.bootstrap_servers, stack.topics.meter_events)
        sender.send([("CS-QUIET", [_event("CS-QUIET", EventKind.STARTED, T0, 5_000.0, 0),
                                   _event("CS-QUIET", EventKind.METER, T0 + 60_000, 9_000.0, 1)]),
                     ("CS-BUSY", [_event("CS-BUSY", EventKind.STARTED, T0 + 7 * HOUR, 0.0, 0)])])
        database = settings.clickhouse.database
        query = (f"SELECT station_id, state, energy_wh, flags, toUnixTimestamp64Milli(end_time)"
                 f" FROM {database}.charging_sessions FINAL ORDER BY station_id")
        deadline = time.monotonic() + 90
        while not stack.client.query(query).result_rows:
            assert time.monotonic() < deadline, "the quiet station's session was never closed"
            stack.check_alive()
            time.sleep(0.5)
        time.sleep(2.5)  # more timer rounds, over the state the expiry saved
        # ...and the worker still works: the busy station's stop closes its session
        sender.send([("CS-BUSY", [_event("CS-BUSY", EventKind.ENDED, T0 + 8 * HOUR, 11_000.0,
                                         1)])])
        while len(rows := stack.client.query(query).result_rows) < 2:
            assert time.monotonic() < deadline, "the worker stopped after expiring a session"
            stack.check_alive()
            time.sleep(0.5)
    assert [tuple(r) for r in rows] == [
        ("CS-BUSY", "completed", 11_000.0, [], T0 + 8 * HOUR),
        ("CS-QUIET", "incomplete", 4_000.0, ["missing_stop"], T0 + 60_000)]


STUCK_S = 3.0
CLOSE_S = 8.0
BOUND_S = 60.0
"""Generous: a timer round, a batch of the sink and a loaded machine fit in it many times."""


def test_a_station_alone_on_its_partition_is_reported_stuck_then_closed(
        broker: EmbeddedBroker, chdb_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"q{uuid.uuid4().hex[:8]}", "partitions": 1},
        clickhouse={"url": chdb_url, "database": f"q_{uuid.uuid4().hex[:8]}"},
        processor={"expire_every_s": 0.5,
                   "rules": {"stuck_after_ms": int(STUCK_S * 1000),
                             "inactivity_wall_ms": int(CLOSE_S * 1000)}},
    )
    t0 = now_ms()  # the charger's clock: the session is live, not a replay
    with LocalStack(settings, tmp_path) as stack:
        sender = KeyedSender(stack.bootstrap_servers, stack.topics.meter_events)
        sender.send([("CS-ALONE", [_event("CS-ALONE", EventKind.STARTED, t0, 5_000.0, 0),
                                   _event("CS-ALONE", EventKind.METER, t0 + 500, 5_001.0, 1)])])
        sent = time.monotonic()  # the worker applies them later: nothing can come earlier
        database = settings.clickhouse.database
        stuck_query = (f"SELECT anomaly_id, toUnixTimestamp64Milli(detected_at) "
                       f"FROM {database}.anomalies FINAL "
                       f"WHERE kind = 'stuck_session' AND station_id = 'CS-ALONE'")
        closed_query = (f"SELECT state, flags, toUnixTimestamp64Milli(end_time) "
                        f"FROM {database}.charging_sessions FINAL "
                        f"WHERE station_id = 'CS-ALONE' AND state = 'incomplete'")
        stuck_after = closed_after = None
        while closed_after is None or stuck_after is None:
            elapsed = time.monotonic() - sent
            assert elapsed < CLOSE_S + BOUND_S, (stuck_after, closed_after)
            stack.check_alive()
            if stuck_after is None and stack.client.query(stuck_query).result_rows:
                stuck_after = elapsed
            if closed_after is None and stack.client.query(closed_query).result_rows:
                closed_after = elapsed
            time.sleep(0.2)
        stuck_rows = stack.client.query(stuck_query).result_rows
        closed_rows = stack.client.query(closed_query).result_rows
    assert STUCK_S <= stuck_after <= STUCK_S + BOUND_S
    assert CLOSE_S <= closed_after <= CLOSE_S + BOUND_S
    assert stuck_after < closed_after, "on-call hears of it before the close"
    assert [(state, list(flags), end) for state, flags, end in closed_rows] == [
        ("incomplete", ["missing_stop"], t0 + 500)]  # ends at its last event, not "now"
    assert [detected for _, detected in stuck_rows] == [t0 + 500]  # one anomaly
