"""The Avro input tables and views derived from the row mappings (sinks/derived_views.py),
in real chDB: a column added to a mapping lands by both paths, and `migrate` re-creates
what changed and leaves the rest."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from schemas.catalog import default_catalog
from schemas.codec import Codec
from sinks.avro_blocks import sourced_container
from sinks.derived_views import SESSIONS_IN, UPDATES_IN, apply_derived
from sinks.mapping import Column
from sinks.migrate import migrate
from sinks.row_mappings import SESSION_ROW
from sinks.session_sink import SessionSink
from tests.integration.test_session_sink_paths import messages, varied

pytestmark = pytest.mark.integration

CODEC = Codec()
TOPIC = "cw-sessions-completed"
HEADER = 10
"""Single-object encoding: C3 01 and the 8-byte schema fingerprint, then the body."""

KWH = Column("energy_kwh", "round(s.energy_wh / 1000, 3)", "round(energy_wh / 1000, 3)")
WITH_KWH = replace(SESSION_ROW, columns=(*SESSION_ROW.columns, KWH))
SESSIONS_IN_WITH_KWH = replace(SESSIONS_IN, mappings=(WITH_KWH, *SESSIONS_IN.mappings[1:]))


def recorded(client: Client, database: str) -> dict[str, str]:
    return dict(client.query(
        f"SELECT name, argMax(checksum, applied_at) FROM {database}.derived_objects "
        "GROUP BY name").result_rows)


def test_migrate_records_each_input_and_leaves_an_unchanged_one_alone(
        client: Client, database: str) -> None:
    assert recorded(client, database) == {i.table: i.checksum() for i in (SESSIONS_IN, UPDATES_IN)}
    assert apply_derived(client, database, client.command) == []


def test_a_column_added_to_a_mapping_is_written_by_both_paths(client: Client,
                                                              database: str) -> None:
    python_database = f"py_{uuid.uuid4().hex[:10]}"
    migrate(client, python_database)
    for db in (database, python_database):
        client.command(f"ALTER TABLE {db}.charging_sessions ADD COLUMN energy_kwh Float64")
    assert apply_derived(client, database, client.command,
                         (SESSIONS_IN_WITH_KWH,)) == ["sessions_in"]
    sessions = varied()

    schema = default_catalog().current("ChargingSession")
    bodies = [(0, n, CODEC.encode_session(s, TOPIC)[HEADER:]) for n, s in enumerate(sessions)]
    client.raw_insert(f"{database}.sessions_in", SESSIONS_IN_WITH_KWH.columns,
                      insert_block=sourced_container(schema, TOPIC, bodies), fmt="Avro")
    row = WITH_KWH.builder()
    client.insert(f"{python_database}.charging_sessions",
                  [row(s, TOPIC, 0, n) for n, s in enumerate(sessions)],
                  column_names=WITH_KWH.column_names)

    expected = sorted((s.session_id, round(s.energy_wh / 1000, 3)) for s in sessions)
    for db in (database, python_database):
        stored = client.query(f"SELECT session_id, energy_kwh FROM {db}.charging_sessions "
                              "ORDER BY session_id").result_rows
        assert [tuple(r) for r in stored] == expected, db


def test_migrate_restores_the_packaged_definition_when_it_differs(client: Client,
                                                                  database: str) -> None:
    client.command(f"ALTER TABLE {database}.charging_sessions ADD COLUMN energy_kwh Float64")
    apply_derived(client, database, client.command, (SESSIONS_IN_WITH_KWH,))
    assert "energy_kwh" in client.command(f"SHOW CREATE TABLE {database}.sessions_from_avro")

    assert migrate(client, database) == []  # no file to apply; the views are derived again
    assert "energy_kwh" not in client.command(f"SHOW CREATE TABLE {database}.sessions_from_avro")
    assert recorded(client, database)["sessions_in"] == SESSIONS_IN.checksum()


def test_a_database_migrated_before_the_views_were_derived_gets_them(client: Client,
                                                                      tmp_path: Path) -> None:
    """Migrated by the previous release (its files only: sessions_in as 0014 wrote it)."""
    database = f"old_{uuid.uuid4().hex[:10]}"
    shutil.copytree(Path(__file__).parents[2] / "sinks" / "migrations", tmp_path / "files")
    migrate(client, database, tmp_path / "files")
    assert "`version` UInt32" in client.command(f"SHOW CREATE TABLE {database}.sessions_in")

    assert migrate(client, database) == []
    assert recorded(client, database) == {i.table: i.checksum() for i in (SESSIONS_IN, UPDATES_IN)}
    assert "`version` Int32" in client.command(f"SHOW CREATE TABLE {database}.sessions_in")
    batch = messages(varied())
    assert SessionSink(client, database, CODEC).write(TOPIC, 0, batch, "t-0-0-5").rows == 6
    for table in ("charging_sessions", "cdrs"):
        count = client.query(f"SELECT count() FROM {database}.{table}").result_rows
        assert count == [(len(batch),)], table
