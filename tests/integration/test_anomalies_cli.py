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
