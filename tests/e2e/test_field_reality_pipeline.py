"""What real chargers do, end to end (issue 15 §1, §4): transaction ids reused from one day to
the next, and a transaction uploaded weeks after it happened, with its true times.

Simulator (or hand-built charger traffic) -> Kafka -> Faust -> ClickHouse, compared with the
plan: the simulator's truth, or the times the test gave the charger.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.lookup import ClickHouseSource, find_transaction
from chargewatch.publishing import fleet_config, meter_publisher, progress_bar, publish_simulation
from chargewatch.stack import LocalStack
from infra.clock import now_ms
from infra.settings import Settings, load_settings
from producers.simulator import simulate
from schemas.records import EventKind, MeterEvent
from tests.e2e.verify import assert_matches_truth, ms, session_rows

pytestmark = pytest.mark.e2e

DAY_MS = 86_400_000


def _settings(broker: EmbeddedBroker, chdb_url: str, **simulator: Any) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"fr{uuid.uuid4().hex[:8]}", "partitions": 3},
        clickhouse={"url": chdb_url, "database": f"fr_{uuid.uuid4().hex[:8]}"},
        simulator=simulator)


def test_two_simulated_days_with_overlapping_transaction_ids_lose_no_session(
        broker: EmbeddedBroker, chdb_url: str, tmp_path: Path) -> None:
    """`chargewatch simulate` twice, other seed and next day, same stations: the second
    day's transaction ids (`{station}-{connector}-{n}`) repeat the first day's."""
    days = [_settings(broker, chdb_url, stations=8, duration_h=24.0, seed=21,
                      start="2026-11-23T00:00:00Z"),
            _settings(broker, chdb_url, stations=8, duration_h=24.0, seed=22,
                      start="2026-11-24T00:00:00Z")]
    simulations = [simulate(fleet_config(day)) for day in days]
    truths = [list(s.truth()) for s in simulations]
    first_ids = {(t.station_id, t.connector_id, t.transaction_id) for t in truths[0]}
    shared = [t for t in truths[1]
              if (t.station_id, t.connector_id, t.transaction_id) in first_ids]
    assert shared, "the two days should share transaction ids"
    settings = days[0]
    with LocalStack(settings, tmp_path) as stack:
        publisher, _, _ = meter_publisher(settings, stack.bootstrap_servers)
        for simulation in simulations:
            with progress_bar() as progress:
                publish_simulation(simulation, publisher, None, progress)
        truth = truths[0] + truths[1]
        stack.wait_for_sessions(len(truth), timeout_s=240)
        database = settings.clickhouse.database
        rows = session_rows(stack.client, database)
        assert_matches_truth(truth, rows)
        assert all(r["flags"] == [] and r["version"] == 1 for r in rows.values())
        reused = _anomaly_sessions(stack.client, database, "transaction_id_reused",
                                   minimum=1)
        source = ClickHouseSource(stack.client, database)
        for session_id in reused:
            row = next(r for r in rows.values() if r["session_id"] == session_id)
            named = find_transaction(source, None, row["station_id"], row["transaction_id"])
            planned = sorted((t for t in truth if (t.station_id, t.transaction_id)
                              == (row["station_id"], row["transaction_id"])),
                             key=lambda t: t.start_ms, reverse=True)
            assert len(planned) >= 2
            assert [f.record["session_id"] for f in named] == \
                [rows[(t.station_id, t.connector_id, t.start_ms)]["session_id"] for t in planned]
    by_id = {r["session_id"]: r for r in rows.values()}
    second_day = {(t.station_id, t.connector_id, t.start_ms) for t in truths[1]}
    for session_id in reused:
        row = by_id[session_id]
        assert (row["station_id"], row["connector_id"], ms(row["start_time"])) in second_day
        assert (row["station_id"], row["connector_id"], row["transaction_id"]) in first_ids


def test_a_transaction_uploaded_20_days_late_keeps_its_true_times(
        broker: EmbeddedBroker, chdb_url: str, tmp_path: Path) -> None:
    """A charger last heard 21 days ago reconnects: its gateway forwards a status (now) and
    the transaction it queued 20 days ago in one flush, then live traffic follows."""
    settings = _settings(broker, chdb_url)
    now = now_ms()
    plan = {"T-OLD": now - 21 * DAY_MS, "T-QUEUED": now - 20 * DAY_MS, "T-LIVE": now + 60_000}
    before = _transaction("T-OLD", plan["T-OLD"], 1_000_000.0)
    queued = _transaction("T-QUEUED", plan["T-QUEUED"], 1_000_300.0, received=now + 1_000)
    live = _transaction("T-LIVE", plan["T-LIVE"], 1_000_600.0)
    status = MeterEvent("reconnect", "CS-OFFLINE", 1, EventKind.STATUS, now, now + 200,
                        status="Available")
    with LocalStack(settings, tmp_path) as stack:
        publisher = meter_publisher(settings, stack.bootstrap_servers)[0]
        for events in (before, [status, *queued], live):
            publisher.publish("CS-OFFLINE", events)
        publisher.flush(30)
        stack.wait_for_sessions(3, timeout_s=120)
        rows = session_rows(stack.client, settings.clickhouse.database)
    got = {r["transaction_id"]: (ms(r["start_time"]), ms(r["end_time"]), round(r["energy_wh"]),
                                 list(r["flags"])) for r in rows.values()}
    assert got == {tx: (start, start + 3 * 60_000, 300, []) for tx, start in plan.items()}


def _transaction(tx: str, start: int, register: float,
                 received: int | None = None) -> list[MeterEvent]:
    """Start, two readings and a stop a minute apart; received 200 ms after their times, or
    all at `received` and the following milliseconds (an upload)."""
    events = []
    for seq, kind in enumerate((EventKind.STARTED, EventKind.METER, EventKind.METER,
                                EventKind.ENDED)):
        at = start + seq * 60_000
        events.append(MeterEvent(
            f"{tx}:{seq}", "CS-OFFLINE", 1, kind, at,
            at + 200 if received is None else received + seq, tx, seq, id_tag="TAG",
            energy_wh=register + 100 * seq, power_w=6_000.0))
    return events


def _anomaly_sessions(client: Any, database: str, kind: str, minimum: int) -> list[str]:
    """Session IDs of the anomalies of `kind`, once at least `minimum` have landed."""
    deadline = time.monotonic() + 60
    found: dict[str, list[str]] = defaultdict(list)
    while time.monotonic() < deadline:
        found.clear()
        for session_id, anomaly in client.query(
                f"SELECT session_id, anomaly_id FROM {database}.anomalies FINAL "
                f"WHERE kind = %(kind)s", parameters={"kind": kind}).result_rows:
            found[session_id].append(anomaly)
        if len(found) >= minimum:
            break
        time.sleep(0.5)
    assert len(found) >= minimum, f"fewer than {minimum} {kind} anomalies"
    assert all(len(ids) == 1 for ids in found.values()), found
    return list(found)
