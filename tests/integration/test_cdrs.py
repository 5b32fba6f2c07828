"""CDRs written by the sessions sink into real chDB: credits on correction, replays add nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from chargewatch.embedded import EmbeddedBroker, free_port
from charging.cdr import Price
from infra.topics import Topics, ensure_topics
from schemas.codec import Codec
from schemas.records import ChargingSession, DimensionCost, SessionPeriod, SessionState
from sinks.session_rows import load_cdrs
from sinks.session_sink import SessionSink
from sinks.table_sink import Message
from tests.cli import run_cli, running_sink

pytestmark = pytest.mark.integration

CODEC = Codec()
TOPIC = "cw-sessions-completed"
T0 = 1_717_000_000_000


def session(version: int, cost: str, energy_wh: float, session_id: str = "S-1"
            ) -> ChargingSession:
    incl = Decimal(cost)
    return ChargingSession(
        session_id=session_id, version=version, state=SessionState.COMPLETED,
        station_id="ST-1", connector_id=2, transaction_id="T1", id_tag="TAG", vehicle_id="EV-1",
        start_ms=T0, end_ms=T0 + 1_800_000 + version, meter_start_wh=0.0, meter_end_wh=energy_wh,
        energy_wh=energy_wh, soc_start_pct=None, soc_end_pct=None, max_power_w=22000.0,
        avg_power_w=15000.0, charging_ms=1_500_000, plugged_ms=1_800_000, cost=incl,
        currency="EUR", event_count=12, cost_excl_vat=(incl / Decimal("1.25")).quantize(
            Decimal("0.01")), tariff_id="DAY",
        periods=(SessionPeriod(T0, energy_wh, 1_500_000, 0, 0, 0, -1),
                 SessionPeriod(T0 + 1_500_000, 0.0, 0, 300_000, 0, -1, 1)),
        dimension_costs=(DimensionCost("ENERGY", incl - Decimal("1.00"), incl - Decimal("1.25")),
                         DimensionCost("PARKING_TIME", Decimal("0.80"), Decimal("1.00"))))


def write(sink: SessionSink, sessions: list[ChargingSession], first: int, token: str) -> None:
    messages = [Message(first + i, CODEC.encode_session(s, TOPIC), s.session_id.encode())
                for i, s in enumerate(sessions)]
    written = sink.write(TOPIC, 0, messages, token)
    assert written.dead_letters == []


def rows(client: Client, database: str) -> int:
    """Rows without FINAL: a duplicate would show here."""
    return int(client.query(f"SELECT count() FROM {database}.cdrs").result_rows[0][0])


def test_a_correction_credits_the_old_cdr_and_replays_add_nothing(
        client: Client, database: str) -> None:
    sink = SessionSink(client, database, CODEC)
    v1, v2 = session(1, "10.00", 20_000.0), session(2, "12.50", 25_000.0)
    write(sink, [v1], 0, f"{TOPIC}-0-0-0")
    write(sink, [v2], 1, f"{TOPIC}-0-1-1")
    cdrs = load_cdrs(client, database, ["S-1"])["S-1"]
    assert [(c.cdr_id, c.credit, c.credit_reference_id) for c in cdrs] == [
        ("S-1-v1", False, None), ("S-1-v1-credit", True, "S-1-v1"), ("S-1-v2", False, None)]
    assert [c.total_cost for c in cdrs] == [
        Price(Decimal("8.00"), Decimal("10.00")), Price(Decimal("-8.00"), Decimal("-10.00")),
        Price(Decimal("10.00"), Decimal("12.50"))]
    assert sum((c.total_cost.incl_vat for c in cdrs), Decimal(0)) == v2.cost
    assert cdrs[1].total_energy_cost == Price(Decimal("-9.00"), Decimal("-8.75"))
    assert cdrs[2].periods == v2.periods and cdrs[2].tariff_id == "DAY"
    assert cdrs[2].total_parking_cost == Price(Decimal("0.80"), Decimal("1.00"))
    assert rows(client, database) == 3

    write(sink, [v2], 1, f"{TOPIC}-0-1-1")  # the same batch, retried
    write(sink, [v1, v2], 7, f"{TOPIC}-0-7-8")  # a processor replay at new offsets
    assert rows(client, database) == 3
    assert load_cdrs(client, database, ["S-1"])["S-1"] == cdrs


def test_versions_in_one_batch_and_a_missing_version(client: Client, database: str) -> None:
    sink = SessionSink(client, database, CODEC)
    a = [session(1, "5.00", 1.0, "A"), session(2, "6.00", 2.0, "A"),
         session(3, "4.00", 3.0, "A")]
    b1, b3 = session(1, "7.00", 1.0, "B"), session(3, "9.00", 3.0, "B")
    write(sink, [*a, b1], 0, f"{TOPIC}-0-0-3")
    write(sink, [b3], 4, f"{TOPIC}-0-4-4")  # B's v2 never reached the sink (compacted)
    found = load_cdrs(client, database, ["A", "B", "C"])
    assert set(found) == {"A", "B"}
    assert [c.cdr_id for c in found["A"]] == ["A-v1", "A-v1-credit", "A-v2", "A-v2-credit",
                                             "A-v3"]
    assert [c.cdr_id for c in found["B"]] == ["B-v1", "B-v1-credit", "B-v3"]
    for sid, latest in (("A", a[-1]), ("B", b3)):
        assert sum((c.total_cost.incl_vat for c in found[sid]), Decimal(0)) == latest.cost
        assert sum((c.total_cost.excl_vat or 0 for c in found[sid]),
                   Decimal(0)) == latest.cost_excl_vat


def test_an_old_schema_record_gets_a_cdr_with_its_cost_incl_vat(
        client: Client, database: str) -> None:
    sink = SessionSink(client, database, CODEC)
    old = replace(session(1, "3.30", 5000.0, "OLD"), cost_excl_vat=None, tariff_id=None,
                  periods=(), dimension_costs=())
    write(sink, [old], 0, f"{TOPIC}-0-0-0")
    (cdr,) = load_cdrs(client, database, ["OLD"])["OLD"]
    assert cdr.total_cost == Price(None, Decimal("3.30")) and cdr.tariff_id is None
    assert cdr.periods == (SessionPeriod(T0, 5000.0, 1_500_000, 300_000),)


def test_cdr_command_through_the_sink_worker_and_from_chdb(
        broker: EmbeddedBroker, namespace: str, tmp_path: Path) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 1)
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "CHARGEWATCH_KAFKA__NAMESPACE": namespace,
           "CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}",
           "CHARGEWATCH_SINK__WEB_PORT": str(port), "COLUMNS": "160"}
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for version in (session(1, "10.00", 20_000.0, "EV-7"), session(2, "12.50", 25_000.0, "EV-7")):
        producer.produce(topics.sessions_completed, key=b"EV-7",
                         value=CODEC.encode_session(version, topics.sessions_completed))
    assert producer.flush(10) == 0
    with running_sink(env, port, rows=2):
        found = run_cli("cdr", "EV-7", "--json", env=env)
        assert found.returncode == 0, found.stderr
        docs = json.loads(found.stdout, parse_float=Decimal)
        assert [(d["id"], d["credit"], d.get("credit_reference_id")) for d in docs] == [
            ("EV-7-v1", False, None), ("EV-7-v1-credit", True, "EV-7-v1"),
            ("EV-7-v2", False, None)]
        assert [d["total_cost"]["incl_vat"] for d in docs] == [
            Decimal("10.00"), Decimal("-10.00"), Decimal("12.50")]
        assert docs[2]["total_parking_cost"] == {"excl_vat": Decimal("0.80"),
                                                 "incl_vat": Decimal("1.00")}
        assert docs[0]["tariffs"] == [{"id": "DAY", "currency": "EUR"}]
        lacking = found.stderr.strip().splitlines()  # one line per CDR, naming the fields
        assert [line.split(":")[0] for line in lacking] == [f"CDR {d['id']}" for d in docs]
        assert all("country_code" in line and "cdr_location.address" in line
                   and "CHARGEWATCH_OCPI__COUNTRY_CODE" in line and "no stations file" in line
                   for line in lacking), lacking
        missing = run_cli("cdr", "EV-404", env=env)
        assert missing.returncode == 1 and "no CDRs for session 'EV-404'" in missing.stderr
    table = run_cli("cdr", "EV-7", env=env)  # nobody holds the folder now: read it directly
    assert table.returncode == 0, table.stderr
    assert "EV-7-v1-credit" in table.stdout and "net 12.50 EUR" in table.stdout

    stations = tmp_path / "stations.yaml"  # ST-1 left out: the CLI says so, prints the rest
    stations.write_text("stations:\n  OTHER:\n    connectors: {1: 11000}\n")
    coded = run_cli("cdr", "EV-7", "--json", env={
        **env, "CHARGEWATCH_OCPI__COUNTRY_CODE": "DE", "CHARGEWATCH_OCPI__PARTY_ID": "CWT",
        "CHARGEWATCH_PROCESSOR__STATIONS_FILE": str(stations)})
    assert coded.returncode == 0, coded.stderr
    docs = json.loads(coded.stdout, parse_float=Decimal)
    assert {(d["country_code"], d["party_id"], d["cdr_location"]["evse_id"]) for d in docs} \
        == {("DE", "CWT", "DE*CWT*EST1*2")}
    lacking = coded.stderr.strip().splitlines()
    assert len(lacking) == 3 and all(
        f"station ST-1 is not in the stations file {stations}" in line
        and "country_code" not in line for line in lacking), lacking
