"""`chargewatch session` and `report` as a user runs them, with and without the sink that
holds chDB: every session a reused transaction id names (issue 15 §1), one shape for every
session and IDs in any letter case (issue 16 §4), bad report options as one line naming the
option, exit 2 (issue 16 §3)."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
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

HOUR_MS = 3_600_000
T0 = 1_795_400_000_000
FIRST = ChargingSession(
    session_id="EV-000000042", version=1, state=SessionState.COMPLETED, station_id="CS-0042",
    connector_id=2, transaction_id="T-9", id_tag="04AABBCCDDEEFF", vehicle_id="VIN123",
    start_ms=T0, end_ms=T0 + HOUR_MS, meter_start_wh=1000.0, meter_end_wh=21000.0,
    energy_wh=20000.0, soc_start_pct=20.4, soc_end_pct=80.0, max_power_w=22000.0,
    avg_power_w=20000.0, charging_ms=HOUR_MS, plugged_ms=HOUR_MS, cost=Decimal("9.00"),
    currency="EUR", event_count=62, stop_reason="EVDisconnected")
REUSED = dataclasses.replace(FIRST, session_id="EV-000000777", start_ms=T0 + 30 * HOUR_MS,
                             end_ms=T0 + 31 * HOUR_MS)
"""The charger's counter was reset: the next day's session has the same transaction id."""
OTHER = dataclasses.replace(FIRST, session_id="EV-000000043", station_id="CS-0043")

BAD_OPTIONS = [(["--from", "yesterday"], "--from"), (["--to", "2026-13-01"], "--to"),
               (["--tz", "Mars/Olympus"], "--tz"),
               (["--from", "2026-11-24", "--to", "2026-11-23"], "--from")]


def _assert_one_line_exit_2(result: object, option: str) -> None:
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert result.returncode == 2, result.stderr  # type: ignore[attr-defined]
    assert len(lines) == 1 and option in lines[0], lines
    assert "date_from" not in lines[0] and "date_to" not in lines[0]


@pytest.mark.parametrize(("args", "option"), BAD_OPTIONS)
def test_bad_report_options_without_a_sink_are_one_line(args: list[str], option: str,
                                                        tmp_path: Path) -> None:
    env = {"CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}",
           "CHARGEWATCH_SINK__WEB_PORT": str(free_port())}
    _assert_one_line_exit_2(run_cli("report", "station-daily", *args, env=env, cwd=tmp_path),
                            option)


def test_lookups_and_reports_through_the_sink(broker: EmbeddedBroker, namespace: str,
                                              tmp_path: Path) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 2)
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "CHARGEWATCH_KAFKA__NAMESPACE": namespace,
           "CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}",
           "CHARGEWATCH_SINK__WEB_PORT": str(port),
           "CHARGEWATCH_PROCESSOR__WEB_PORT": str(free_port())}
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for session in (FIRST, REUSED, OTHER):
        producer.produce(topics.sessions_completed, key=session.session_id.encode(),
                         value=Codec().encode_session(session, topics.sessions_completed))
    producer.flush(10)
    with running_sink(env, port, rows=3):
        both = run_cli("session", "--station", "CS-0042", "T-9", "--json", env=env)
        assert both.returncode == 0, both.stderr
        assert [r["session_id"] for r in json.loads(both.stdout)] == [REUSED.session_id,
                                                                       FIRST.session_id]
        one = run_cli("session", "ev-000000042", "--json", env=env)
        assert one.returncode == 0, one.stderr
        record = json.loads(one.stdout)
        assert record["session_id"] == FIRST.session_id
        assert (record["soc_start_pct"], record["cost"]) == (20.4, "9.0000")
        assert record["start_time"] == "2026-11-23T02:13:20Z"
        for args, option in BAD_OPTIONS:
            _assert_one_line_exit_2(run_cli("report", "station-daily", *args, env=env), option)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/reports/station-daily"
                                   "?date_from=2026-11-24&date_to=2026-11-23", timeout=10)
        assert refused.value.code == 400
        assert json.load(refused.value)["error"] == "--from 2026-11-24 is after --to 2026-11-23"
