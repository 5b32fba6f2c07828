"""Anomalies through the sink into ClickHouse: rows equal what was published, once each."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from chargewatch.embedded import EmbeddedBroker
from chargewatch.topics import Topics, ensure_topics
from schemas.codec import Codec
from schemas.records import Anomaly, Severity
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.runner import SinkRunner

pytestmark = pytest.mark.integration

T0 = 1_795_400_000_000


@pytest.fixture
def client(chdb_url: str, database: str) -> Iterator[Client]:
    opened = connect(chdb_url)
    migrate(opened, database)
    yield opened
    opened.close()


def anomaly(i: int) -> Anomaly:
    severity = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)[i % 3]
    return Anomaly(
        anomaly_id=f"connector_faulted:CS-{i % 4}:{1 + i % 2}:-:{T0 + i}",
        kind="connector_faulted", severity=severity, station_id=f"CS-{i % 4}",
        connector_id=None if i % 5 == 0 else 1 + i % 2,
        session_id=None if i % 2 else f"S-{i}", detected_ms=T0 + i,
        message=f"CS-{i % 4}/{1 + i % 2}: connector faulted: E{i}",
        evidence={"status": "Faulted", "error_code": f"E{i}"})


def run_until_idle(sink: SinkRunner, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while not sink.caught_up():
            assert time.monotonic() < deadline, f"sink not caught up: {sink.stats}"
            sink.poll_once(0.1)
    finally:
        sink.close()


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
