"""`chargewatch anomalies` as on-call runs it: a separate process against the real broker."""

from __future__ import annotations

import json
import subprocess

import pytest
from confluent_kafka import Producer

from chargewatch.embedded import EmbeddedBroker
from infra.topics import Topics, ensure_topics
from schemas.codec import Codec
from schemas.records import Anomaly, Severity
from tests.cli import run_cli

pytestmark = pytest.mark.integration

T0 = 1_795_400_000_000


def _anomaly(kind: str, severity: Severity, station: str, offset_ms: int) -> Anomaly:
    return Anomaly(anomaly_id=f"{kind}:{station}:1:{T0 + offset_ms}", kind=kind,
                   severity=severity, station_id=station, connector_id=1, session_id=None,
                   detected_ms=T0 + offset_ms, message=f"{station}/1: {kind}",
                   evidence={"error_code": "GroundFailure"} if kind == "connector_faulted"
                   else {})


def _run(broker: EmbeddedBroker, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("anomalies", *args, env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                                            "CHARGEWATCH_KAFKA__NAMESPACE": namespace})


def test_filters_by_severity_and_station_and_prints_json(broker: EmbeddedBroker,
                                                         namespace: str) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 2)
    published = [_anomaly("clock_skew", Severity.INFO, "CS-1", 1),
                 _anomaly("suspicious_session", Severity.WARNING, "CS-2", 2),
                 _anomaly("connector_faulted", Severity.CRITICAL, "CS-1", 3)]
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    codec = Codec()
    for a in published:
        producer.produce(topics.anomalies, key=a.station_id.encode(),
                         value=codec.encode_anomaly(a, topics.anomalies))
    assert producer.flush(30) == 0

    result = _run(broker, namespace, "--from-beginning", "--severity", "warning", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((d["anomaly_id"], d["severity"], d["station_id"], d["evidence"])
                  for d in lines) == [
        (published[2].anomaly_id, "critical", "CS-1", {"error_code": "GroundFailure"}),
        (published[1].anomaly_id, "warning", "CS-2", {})]
    assert all(d["detected_at"].startswith("2026-") for d in lines)

    shown = _run(broker, namespace, "--from-beginning", "--station", "CS-1")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.splitlines()
    assert len(text) == 2 and all("CS-1/1" in line for line in text)
    assert sorted(line.split()[1] for line in text) == ["CRITICAL", "INFO"]


def test_lines_come_in_time_order_across_partitions(broker: EmbeddedBroker,
                                                    namespace: str) -> None:
    """Issue 15 §5: partitions are read side by side; the lines are merged by time, and an
    episode's states (open, update, closed) each show as one line naming the state."""
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 3)
    codec = Codec()
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    times = {f"CS-{n}": [n * 7 % 11 + 11 * k for k in range(4)] for n in range(6)}
    for station, offsets in times.items():  # each station (key) in order, stations apart
        for k, offset in enumerate(offsets):
            a = _anomaly("clock_skew", Severity.INFO, station, offset * 60_000)
            status = ("open", "update", "update", "closed")[k]
            producer.produce(topics.anomalies, key=station.encode(), value=codec.encode_anomaly(
                Anomaly(**{**{f: getattr(a, f) for f in Anomaly.__slots__},
                           "anomaly_id": f"clock_skew:{station}:1:-:{T0}", "status": status,
                           "occurrences": k + 1, "first_ms": T0, "last_ms": a.detected_ms}),
                topics.anomalies))
    assert producer.flush(30) == 0

    result = _run(broker, namespace, "--from-beginning", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 24
    assert [d["detected_ms"] for d in lines] == sorted(d["detected_ms"] for d in lines)
    assert {d["status"] for d in lines} == {"open", "update", "closed"}
    text = _run(broker, namespace, "--from-beginning", "--station", "CS-3").stdout.splitlines()
    assert [line.split()[3] for line in text] == ["open", "update", "update", "closed"]
