"""Migrations apply once and are recorded; the tables keep the latest version and drop repeats."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from schemas.codec import Codec
from schemas.records import ChargingSession, SessionPeriod, SessionState
from sinks.clickhouse import connect
from sinks.errors import ClickHouseUnavailable, MigrationError
from sinks.migrate import load_migrations, migrate
from sinks.session_sink import Message, SessionSink, load_cdrs

pytestmark = pytest.mark.integration


@pytest.fixture
def client(chdb_url: str) -> Iterator[Client]:
    opened = connect(chdb_url)
    yield opened
    opened.close()  # one chDB folder per process at a time


def session(session_id: str, version: int, cost: str = "1.00") -> ChargingSession:
    return ChargingSession(
        session_id=session_id, version=version, state=SessionState.COMPLETED,
        station_id="ST-1", connector_id=1, transaction_id=None, id_tag="TAG", vehicle_id=None,
        start_ms=1_717_000_000_000, end_ms=1_717_000_600_000, meter_start_wh=100.0,
        meter_end_wh=2100.0, energy_wh=2000.0, soc_start_pct=20.0, soc_end_pct=None,
        max_power_w=11000.0, avg_power_w=9000.0, charging_ms=500_000, plugged_ms=600_000,
        cost=Decimal(cost), currency="EUR", event_count=5, stop_reason="EVDisconnected",
        flags=("late",))


def test_migrations_apply_once_and_are_recorded(client: Client, database: str) -> None:
    names = [m.name for m in load_migrations()]
    assert names[:3] == ["0001_charging_sessions.sql", "0002_dead_letters.sql",
                         "0003_sink_batches.sql"]
    assert migrate(client, database) == names
    assert migrate(client, database) == []
    recorded = client.query(f"SELECT name, checksum FROM {database}.schema_migrations "
                            "ORDER BY name").result_rows
    assert [(n, c) for n, c in recorded] == [(m.name, m.checksum) for m in load_migrations()]
    tables = {r[0] for r in client.query(f"SHOW TABLES FROM {database}").result_rows}
    assert {"charging_sessions", "charging_sessions_latest", "dead_letters",
            "sink_batches", "schema_migrations"} <= tables


def test_changed_applied_migration_is_refused_by_name(client: Client, database: str,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(Path(__file__).parents[2] / "sinks" / "migrations", folder)
    migrate(client, database, folder)
    edited = folder / "0002_dead_letters.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="0002_dead_letters.sql changed"):
        migrate(client, database, folder)


def test_broken_migration_names_its_file(client: Client, database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE {database}.x (;\n")
    with pytest.raises(MigrationError, match="0001_bad.sql failed"):
        migrate(client, database, tmp_path)
    assert client.query(f"SELECT count() FROM {database}.schema_migrations").result_rows == [(0,)]


def test_bad_database_name_is_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="not a valid ClickHouse database name"):
        migrate(client, "x; DROP DATABASE y")


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ClickHouseUnavailable, match=r"cannot connect to ClickHouse at "
                                                     r"http://u:\*\*\*@127.0.0.1:9"):
        connect("http://u:secret@127.0.0.1:9")


def test_latest_version_wins_under_final(client: Client, database: str) -> None:
    migrate(client, database)
    sink = SessionSink(client, database, Codec())
    codec = Codec()
    for version, cost in ((1, "1.00"), (2, "2.50")):
        value = codec.encode_session(session("S-1", version, cost), "t")
        assert sink.write("t", 0, [Message(version, value)], f"t-0-{version}-{version}").rows == 1
    rows = client.query(f"SELECT version, cost FROM {database}.charging_sessions FINAL "
                        "WHERE session_id = 'S-1'").result_rows
    assert rows == [(2, Decimal("2.5"))]
    latest = client.query(f"SELECT version, vehicle_id, flags, start_time FROM "
                          f"{database}.charging_sessions_latest").result_rows
    assert [r[:3] for r in latest] == [(2, None, ["late"])]


def test_same_token_twice_keeps_one_copy(client: Client, database: str) -> None:
    migrate(client, database)
    sink = SessionSink(client, database, Codec())
    codec = Codec()
    batch = [Message(i, codec.encode_session(session(f"S-{i}", 1), "t")) for i in range(50)]
    sink.write("t", 0, batch, "t-0-0-49")
    sink.write("t", 0, batch, "t-0-0-49")
    count = f"SELECT count() FROM {database}.charging_sessions"
    assert client.query(count).result_rows == [(50,)]
    # A different token is a different batch; its versions are stored already (a processor
    # replay republishes the same records at new offsets): the sink writes none of them.
    sink.write("t", 0, batch, "t-0-0-49-other")
    assert client.query(count).result_rows == [(50,)]


def test_cdrs_stored_as_json_keep_their_periods_after_0014(client: Client, database: str,
                                                           tmp_path: Path) -> None:
    before = tmp_path / "before-0014"
    before.mkdir()
    for migration in load_migrations():
        if migration.name < "0014":
            (before / migration.name).write_text(migration.sql)
    migrate(client, database, before)
    stored_json = ('[{"start_ms":1717000000000,"energy_wh":20000.0,"charging_ms":1500000,'
                   '"parking_ms":0,"energy_element":0,"time_element":1,"parking_element":-1},'
                   '{"start_ms":1717001500000,"energy_wh":0.0,"charging_ms":0,'
                   '"parking_ms":300000,"energy_element":-1,"time_element":-1,'
                   '"parking_element":2}]')
    client.command(
        f"INSERT INTO {database}.cdrs (cdr_id, session_id, session_version, issued_version, "
        "credit, station_id, connector_id, start_time, end_time, currency, "
        "total_cost_incl_vat, total_energy_wh, total_time_ms, total_parking_ms, "
        "charging_periods, last_updated) VALUES ('S-1-v1', 'S-1', 1, 1, false, 'ST-1', 1, "
        "0, 0, 'EUR', 7.35, 20000, 1800000, 300000, {periods:String}, 0)",
        parameters={"periods": stored_json})
    assert migrate(client, database)[0] == "0014_cdr_periods.sql"  # then any later ones
    (cdr,) = load_cdrs(client, database, ["S-1"])["S-1"]
    assert cdr.periods == (SessionPeriod(1_717_000_000_000, 20000.0, 1_500_000, 0, 0, 1, -1),
                           SessionPeriod(1_717_001_500_000, 0.0, 0, 300_000, -1, -1, 2))
    rendered = client.query(f"SELECT charging_periods FROM {database}.cdrs").result_rows
    assert rendered == [(stored_json,)]
