"""Anomalies through the sink into ClickHouse: rows equal what was published, once each."""

from __future__ import annotations

from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from chargewatch.embedded import EmbeddedBroker
from infra.topics import Topics, ensure_topics
from schemas.codec import Codec
from schemas.records import Anomaly, ChargingSession, SessionState, Severity
from sinks.runner import SinkRunner
from tests.integration.test_sink import run_until_idle

pytestmark = pytest.mark.integration

T0 = 1_795_400_000_000


def anomaly(i: int) -> Anomaly:
    severity = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)[i % 3]
    return Anomaly(
        anomaly_id=f"connector_faulted:CS-{i % 4}:{1 + i % 2}:-:{T0 + i}",
        kind="connector_faulted", severity=severity, station_id=f"CS-{i % 4}",
        connector_id=None if i % 5 == 0 else 1 + i % 2,
        session_id=None if i % 2 else f"S-{i}", detected_ms=T0 + i,
        message=f"CS-{i % 4}/{1 + i % 2}: connector faulted: E{i}",
        evidence={"status": "Faulted", "error_code": f"E{i}"})


def test_anomalies_land_once(broker: EmbeddedBroker, namespace: str, client: Client,
                             database: str) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, partitions=2)
    codec = Codec()
    published = [anomaly(i) for i in range(40)]
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for a in [*published, published[7], published[8]]:  # two republished (a replay)
        producer.produce(topics.anomalies, key=a.station_id.encode(),
                         value=codec.encode_anomaly(a, topics.anomalies))
    producer.produce(topics.anomalies, key=b"CS-x", value=b"not avro")
    assert producer.flush(30) == 0

    sink = SinkRunner({"bootstrap.servers": broker.bootstrap_servers,
                       "group.id": f"{namespace}-sink"},
                      topics.sessions_completed, topics.dead_letters, client, database, codec,
                      batch_ms=200, anomalies_topic=topics.anomalies)
    run_until_idle(sink)

    # 42 anomalies, and the dead letter of the bad one, read back from dead-letters
    assert sink.stats.rows_written == 43 and sink.stats.dead_lettered == 1
    stored = client.query(
        "SELECT anomaly_id, kind, severity, station_id, connector_id, session_id, "
        "toUnixTimestamp64Milli(detected_at), message, evidence "
        f"FROM {database}.anomalies FINAL ORDER BY anomaly_id").result_rows
    expected = sorted((a.anomaly_id, a.kind, str(a.severity), a.station_id, a.connector_id,
                       a.session_id, a.detected_ms, a.message, a.evidence) for a in published)
    assert [tuple(row) for row in stored] == expected  # republished ones read once
    letters = client.query(f"SELECT stage, source_topic FROM {database}.dead_letters"
                           ).result_rows
    assert letters == [("sink", topics.anomalies)]  # the bad message, dead-lettered and stored


def _running(n: int, minute: int) -> ChargingSession:
    return ChargingSession(
        session_id=f"EV-{n:09d}", version=0, state=SessionState.OPEN,
        station_id=f"CS-{n}", connector_id=1, transaction_id=str(n), id_tag=None,
        vehicle_id=f"VIN{n}", start_ms=T0, end_ms=T0 + minute * 60_000,
        meter_start_wh=1000.0, meter_end_wh=1000.0 + minute * 150,
        energy_wh=minute * 150.0, soc_start_pct=20.0, soc_end_pct=20.0 + minute / 3,
        max_power_w=9_000.0, avg_power_w=9_000.0, charging_ms=minute * 60_000,
        plugged_ms=minute * 60_000, cost=Decimal(minute) / 10, currency="EUR",
        event_count=minute + 1)


_UPDATE_ROW = ("SELECT session_id, station_id, connector_id, transaction_id, vehicle_id, "
               "toUnixTimestamp64Milli(start_time), toUnixTimestamp64Milli(updated_time), "
               "energy_wh, soc_pct, power_w, cost, currency FROM {db}.session_updates FINAL "
               "ORDER BY session_id")


def _update_row(n: int, minute: int) -> tuple:
    return (f"EV-{n:09d}", f"CS-{n}", 1, str(n), f"VIN{n}", T0, T0 + minute * 60_000,
            minute * 150.0, pytest.approx(20.0 + minute / 3), 9_000.0, Decimal(minute) / 10,
            "EUR")


def _sink_updates(broker: EmbeddedBroker, topics: Topics, client: Client,
                  database: str) -> None:
    """Run a sink on `topics` until it has written everything on them."""
    run_until_idle(SinkRunner({"bootstrap.servers": broker.bootstrap_servers,
                               "group.id": f"{topics.namespace}-sink"},
                              topics.sessions_completed, topics.dead_letters, client, database,
                              Codec(), batch_ms=200, updates_topic=topics.session_updates))


def test_session_updates_keep_the_latest_running_state(broker: EmbeddedBroker, namespace: str,
                                                       client: Client, database: str) -> None:
    """session-updates → session_updates (ClickHouse reads the Avro bodies, migration 0012):
    every column lands, and the newest update of each open session wins."""
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, partitions=2)
    codec = Codec()

    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for minute in (1, 3, 2):  # a late, older update must not win
        for n in range(3):
            producer.produce(topics.session_updates, key=f"EV-{n:09d}".encode(),
                             value=codec.encode_session(_running(n, minute),
                                                        topics.session_updates))
    assert producer.flush(30) == 0
    _sink_updates(broker, topics, client, database)
    stored = client.query(_UPDATE_ROW.format(db=database)).result_rows
    assert [tuple(r) for r in stored] == [_update_row(n, 3) for n in range(3)]


def test_a_corrupt_update_is_dead_lettered_and_the_rest_of_its_batch_lands(
        broker: EmbeddedBroker, namespace: str, client: Client, database: str) -> None:
    """A body ClickHouse cannot read fails the Avro insert; the batch then goes through the
    decoding path, which dead-letters that message and stores the others."""
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, partitions=1)
    codec = Codec()
    good = [codec.encode_session(_running(n, 2), topics.session_updates) for n in range(3)]
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for value in (good[0], good[1][:-9], good[1], b"\x00\x01not avro", good[2]):
        producer.produce(topics.session_updates, key=b"k", value=value)
    assert producer.flush(30) == 0
    _sink_updates(broker, topics, client, database)

    stored = client.query(_UPDATE_ROW.format(db=database)).result_rows
    assert [tuple(r) for r in stored] == [_update_row(n, 2) for n in range(3)]
    letters = client.query(f"SELECT source_offset, error FROM {database}.dead_letters "
                           "ORDER BY source_offset").result_rows
    assert [offset for offset, _ in letters] == [1, 3]
    assert "corrupt or truncated ChargingSession" in letters[0][1]


def test_an_episode_is_one_row_in_its_latest_state(broker: EmbeddedBroker, namespace: str,
                                                   client: Client, database: str) -> None:
    """Issue 15 §5: an episode's records (open, update, closed; one anomaly ID) are one row
    under FINAL, in its latest state, also when it runs across a month's end (the table is
    partitioned by month: the row keeps the month it was first seen in)."""
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, partitions=1)
    codec = Codec()
    month_end = 1_798_761_600_000 - 30 * 60_000  # 2026-12-31T23:30Z, a fixed instant
    common = {"anomaly_id": f"clock_skew:CS-1:1:EV-1:{month_end}", "kind": "clock_skew",
              "severity": Severity.INFO, "station_id": "CS-1", "connector_id": 1,
              "session_id": "EV-1", "first_ms": month_end, "message": "CS-1/1: skew"}
    states = [("open", 1, month_end, month_end), ("update", 61, month_end + 3_600_000,
                                                   month_end + 3_600_000),
              ("closed", 90, month_end + 5_400_000, month_end + 5_400_000)]
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for status, count, last, at in states:
        producer.produce(topics.anomalies, key=b"CS-1", value=codec.encode_anomaly(
            Anomaly(**common, status=status, occurrences=count, last_ms=last,
                    detected_ms=at), topics.anomalies))
        assert producer.flush(30) == 0
        run_until_idle(SinkRunner({"bootstrap.servers": broker.bootstrap_servers,
                                   "group.id": f"{namespace}-sink"},
                                  topics.sessions_completed, topics.dead_letters, client,
                                  database, codec, batch_ms=200,
                                  anomalies_topic=topics.anomalies))
    stored = client.query(
        "SELECT status, occurrences, toUnixTimestamp64Milli(detected_at), "
        "toUnixTimestamp64Milli(last_at), toUnixTimestamp64Milli(updated_at) "
        f"FROM {database}.anomalies FINAL").result_rows
    assert [tuple(r) for r in stored] == [
        ("closed", 90, month_end, month_end + 5_400_000, month_end + 5_400_000)]
