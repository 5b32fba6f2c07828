"""The BI and sink roles, enforced by a real ClickHouse engine (chDB), not by reading SQL.

chDB cannot store SQL-created users or roles (its only access storage is the read-only
`users_xml`: `CREATE ROLE` fails with ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND) and it always
logs in as `default`. So each role is checked in its own process whose `default` user is
granted that role, with the role defined in the users XML by exactly the GRANT statement
`chargewatch grant` sends (`role_grants`). The CREATE USER / GRANT role statements
themselves are shown to parse (formatQuery) but cannot be executed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sinks.access import BI_GRANTS, SINK_GRANTS, Account, access_statements, role_grants
from sinks.derived_views import DERIVED_TABLE

pytestmark = pytest.mark.integration

DB = "cw_access"

_CHILD = r"""
import json, sys
import clickhouse_connect
folder, config, mode = sys.argv[1:4]
statements = json.loads(sys.argv[4])
options = {"config-file": config} if config else None
client = clickhouse_connect.get_client(dsn=f"chdb://{folder}", chdb_options=options)
if mode == "admin":
    from sinks.migrate import migrate
    migrate(client, "cw_access")
out = {}
for sql in statements:
    try:
        client.command(sql)
        out[sql] = "ok"
    except Exception as exc:
        text = str(exc)
        out[sql] = "denied" if "ACCESS_DENIED" in text else "error: " + text[:300]
print(json.dumps(out))
"""

_SESSION = (f"INSERT INTO {DB}.charging_sessions (session_id, version, sign, state, station_id, "
            "connector_id, start_time, end_time, meter_start_wh, meter_end_wh, energy_wh, "
            "max_power_w, avg_power_w, charging_ms, plugged_ms, cost, currency, event_count, "
            "flags, _topic, _partition, _offset) VALUES ('EV-{n}', 1, 1, 'completed', 'CS-1', 1, "
            "'2026-11-23 08:00:00', '2026-11-23 09:00:00', 0, 7000, 7000, 11000, 7000, 3600000, "
            "3600000, 2.73, 'EUR', 3, [], 't', 0, {n})")
_DEAD_LETTER = (f"INSERT INTO {DB}.dead_letters (original, source_topic, source_partition, "
                "source_offset, stage, error, failed_at, _partition, _offset) VALUES "
                "('raw', 'meter-events', 0, {n}, 'processor', 'bad', now64(3), 0, {n})")


def _users_xml(path: Path, role: str, grant: str) -> Path:
    """A users config whose `default` login holds `role`, defined by `grant` (no grantee)."""
    path.write_text(f"""<clickhouse>
  <user_directories><users_xml><path>{path}</path></users_xml></user_directories>
  <users><default>
    <password></password><networks><ip>::/0</ip></networks>
    <profile>default</profile><quota>default</quota>
    <grants><query>GRANT {role}</query></grants>
  </default></users>
  <roles><{role}><grants><query>{grant}</query></grants></{role}></roles>
  <profiles><default/></profiles><quotas><default/></quotas>
</clickhouse>
""")
    return path


def _run(folder: Path, config: Path | None, mode: str, statements: list[str]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(config or ""), mode,
         json.dumps(statements)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chDB folder migrated by an admin, with one session and one dead letter in it."""
    path = tmp_path_factory.mktemp("access") / "db"
    quote = "\\'"
    parsed = [f"SELECT formatQuery('{s.replace(chr(39), quote)}')" for s in access_statements(
        DB, [Account("grafana", "pw", f"{DB}_bi"), Account("sink", "pw", f"{DB}_sink")],
        cluster="main", salt="0123")]
    done = _run(path, None, "admin", [_SESSION.format(n=1), _DEAD_LETTER.format(n=1), *parsed])
    assert set(done.values()) == {"ok"}, done
    return path


def test_bi_reads_the_reporting_tables_and_nothing_else(folder: Path, tmp_path: Path) -> None:
    config = _users_xml(tmp_path / "bi.xml", f"{DB}_bi", role_grants(BI_GRANTS, DB))
    reads = [f"SELECT count() FROM {DB}.{g.table}" for g in BI_GRANTS if not g.columns]
    allowed = [*reads, f"SELECT source_topic, error FROM {DB}.dead_letters",
               f"SELECT session_id, cost FROM {DB}.charging_sessions FINAL"]
    refused = [
        _SESSION.format(n=2),
        f"ALTER TABLE {DB}.charging_sessions DELETE WHERE 1",
        f"ALTER TABLE {DB}.anomalies ADD COLUMN x Int8",
        f"DROP TABLE {DB}.station_daily",
        f"TRUNCATE TABLE {DB}.anomalies",
        f"CREATE TABLE {DB}.mine (x Int8) ENGINE = Memory",
        f"SELECT count() FROM {DB}.sink_batches",
        f"SELECT count() FROM {DB}.session_updates",
        f"SELECT count() FROM {DB}.schema_migrations",
        f"SELECT original FROM {DB}.dead_letters",
        f"SELECT * FROM {DB}.dead_letters",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ]
    done = _run(folder, config, "bi", allowed + refused)
    assert {s: done[s] for s in allowed} == dict.fromkeys(allowed, "ok")
    assert {s: done[s] for s in refused} == dict.fromkeys(refused, "denied")


def test_sink_inserts_into_its_tables_only(folder: Path, tmp_path: Path) -> None:
    config = _users_xml(tmp_path / "sink.xml", f"{DB}_sink", role_grants(SINK_GRANTS, DB))
    allowed = [
        _SESSION.format(n=3),  # also feeds the rollups through their materialized views
        _DEAD_LETTER.format(n=3),
        f"INSERT INTO {DB}.sink_batches (topic, partition, first_offset, last_offset) "
        "VALUES ('t', 0, 0, 3)",
        f"SELECT session_id FROM {DB}.charging_sessions WHERE session_id = 'EV-1'",
        f"SELECT partition, max(last_offset) FROM {DB}.sink_batches GROUP BY partition",
        # what `migrate` runs at sink start-up on a current schema
        f"CREATE DATABASE IF NOT EXISTS {DB}",
        f"CREATE TABLE IF NOT EXISTS {DB}.schema_migrations (name String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY name",
        f"SELECT name, any(checksum) FROM {DB}.schema_migrations GROUP BY name",
        DERIVED_TABLE.format(database=DB),
        f"SELECT name, argMax(checksum, applied_at) FROM {DB}.derived_objects GROUP BY name",
        # the stored-session probe (SessionSink._stored_ids), in the sink's own session
        "CREATE TEMPORARY TABLE IF NOT EXISTS probe (session_id String) ENGINE = Memory",
        "TRUNCATE TABLE probe",
        "INSERT INTO probe VALUES ('EV-3')",
        f"SELECT DISTINCT session_id FROM {DB}.charging_sessions WHERE session_id IN probe",
    ]
    refused = [
        f"ALTER TABLE {DB}.charging_sessions DELETE WHERE 1",
        f"DROP TABLE {DB}.charging_sessions",
        f"TRUNCATE TABLE {DB}.dead_letters",
        f"OPTIMIZE TABLE {DB}.charging_sessions FINAL",
        f"CREATE TABLE {DB}.mine (x Int8) ENGINE = Memory",
        f"INSERT INTO {DB}.schema_migrations (name, checksum) VALUES ('9999_x.sql', 'x')",
        f"INSERT INTO {DB}.derived_objects (name, checksum) VALUES ('sessions_in', 'x')",
        f"DROP VIEW {DB}.sessions_from_avro",
        f"SELECT count() FROM {DB}.station_daily",
        f"INSERT INTO {DB}.station_daily (day, station_id, currency) "
        "VALUES ('2026-01-01', 'x', 'EUR')",
        "CREATE DATABASE other",
    ]
    done = _run(folder, config, "sink", allowed + refused)
    assert {s: done[s] for s in allowed} == dict.fromkeys(allowed, "ok")
    assert {s: done[s] for s in refused} == dict.fromkeys(refused, "denied")
    rollup = _run(folder, None, "admin", [
        f"SELECT throwIf(sum(sessions) != 2) FROM {DB}.station_daily"])
    assert set(rollup.values()) == {"ok"}, rollup
