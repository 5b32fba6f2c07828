"""The `chargewatch` command as a person runs it: separate processes, real broker, real chDB."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from chargewatch.embedded import EmbeddedBroker, free_port
from infra.topics import Topics, ensure_topics
from schemas.codec import Codec
from schemas.records import ChargingSession, SessionState
from tests.cli import run_cli, running_sink

pytestmark = pytest.mark.integration


def test_config_show_masks_secrets() -> None:
    result = run_cli("config", "show", "--json",
                  env={"CLICKHOUSE_URL": "http://bi:s3cret-pw@ch.example:8123"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["clickhouse"]["url"] == "http://bi:***@ch.example:8123"
    assert "s3cret-pw" not in result.stdout + result.stderr


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("CHARGEWATCH_KAFKA__PARTITIONS", "0", "kafka.partitions"),
    ("CHARGEWATCH_PROCESSOR__ID_TEMPLATE", "EV-{station_seq}", "processor.id_template"),
    ("CHARGEWATCH_CLICKHOUSE__DATABASE", "x; DROP TABLE y", "clickhouse.database"),
])
def test_invalid_configuration_exits_2_with_one_line(variable: str, value: str,
                                                       named: str) -> None:
    result = run_cli("config", "show", env={variable: value})
    assert result.returncode == 2
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _session(session_id: str) -> ChargingSession:
    return ChargingSession(
        session_id=session_id, version=1, state=SessionState.COMPLETED, station_id="CS-0042",
        connector_id=2, transaction_id="T-9", id_tag="04AABBCCDDEEFF", vehicle_id="VIN123",
        start_ms=1_795_400_000_000, end_ms=1_795_403_600_000, meter_start_wh=1000.0,
        meter_end_wh=21000.0, energy_wh=20000.0, soc_start_pct=20.0, soc_end_pct=80.0,
        max_power_w=22000.0, avg_power_w=20000.0, charging_ms=3_600_000,
        plugged_ms=3_600_000, cost=Decimal("9.00"), currency="EUR", event_count=62,
        stop_reason="EVDisconnected")


def test_session_lookup_asks_the_sink_that_holds_chdb(broker: EmbeddedBroker, namespace: str,
                                                     tmp_path: Path) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 2)
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "CHARGEWATCH_KAFKA__NAMESPACE": namespace,
           "CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}",
           "CHARGEWATCH_SINK__WEB_PORT": str(port)}
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(topics.sessions_completed, key=b"EV-000000042",
                     value=Codec().encode_session(_session("EV-000000042"),
                                                  topics.sessions_completed))
    producer.flush(10)
    with running_sink(env, port, rows=1):
        found = run_cli("session", "EV-000000042", "--json", env=env)
        assert found.returncode == 0, found.stderr
        record = json.loads(found.stdout)
        assert record["station_id"] == "CS-0042"
        assert Decimal(record["cost"]) == Decimal("9.00")
        missing = run_cli("session", "EV-404", env=env)
        assert missing.returncode == 1
        assert "no session 'EV-404'" in missing.stderr


def test_simulate_with_chaos_writes_the_expected_outcome(tmp_path: Path) -> None:
    truth, events = tmp_path / "truth.jsonl", tmp_path / "events.jsonl"
    result = run_cli("simulate", "--stations", "10", "--hours", "12", "--chaos", "0.5",
                  "--no-publish", "--truth", str(truth), "--events", str(events))
    assert result.returncode == 0, result.stderr
    expected = [json.loads(line) for line in truth.read_text().splitlines()]
    injected = {case for e in expected for case in e["injected"]}
    assert len(injected) >= 5, injected
    assert any(e["flags"] for e in expected) and any(e["anomalies"] for e in expected)
    from producers.jsonl import parse_event_line

    lines = events.read_text().splitlines()
    assert [parse_event_line(line, n).event_id for n, line in enumerate(lines[:50], 1)]
    bad = run_cli("simulate", "--chaos", "2", "--no-publish", "--truth", str(truth))
    assert bad.returncode == 2 and "--chaos" in bad.stderr
