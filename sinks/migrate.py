"""Schema migrations: the numbered .sql files in `sinks/migrations/`, applied once, in order.

Each applied file is recorded in `{database}.schema_migrations` with its SHA-256, so a
re-run applies nothing and a file edited after it was applied is refused by name (write a
new numbered file instead). Files use a `{database}` placeholder and may hold several
statements, separated by `;` at the end of a line.

Cluster mode (`cluster=NAME`): the same files run on a ClickHouse cluster. Every DDL
statement gets `ON CLUSTER NAME` and every `*MergeTree` engine becomes its `Replicated*`
twin with the server's default replica path and name (`default_replica_path`,
`default_replica_name`, i.e. `/clickhouse/tables/{uuid}/{shard}` and `{replica}`), so the
files stay written for one server and the checksums do not depend on the mode. Data
statements (INSERT) run once, on the server the client talks to.

Then the Avro input tables and their views, which are generated from the row mappings
rather than written in a file, are created again where their definition changed
(sinks/derived_views.py). They belong to the packaged schema: a `directory` of other
migrations (an older version, in tests) gets none.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import check_identifier
from sinks.derived_views import apply_derived
from sinks.errors import MigrationError

_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_FILE_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str, cluster: str | None = None) -> list[str]:
        """The file's statements with the database filled in; comment-only chunks dropped."""
        text = self.sql.replace("{database}", database)
        chunks = (chunk.strip() for chunk in _STATEMENT_END.split(text))
        found = [chunk for chunk in chunks if _has_code(chunk)]
        return [for_cluster(s, cluster) for s in found] if cluster else found


_DDL_TARGET = re.compile(
    r"^((?:\s*--[^\n]*\n)*\s*(?:RENAME\s+TABLE\s+[\w.]+\s+TO\s+[\w.]+|"
    r"(?:CREATE\s+(?:MATERIALIZED\s+)?(?:TABLE|VIEW|DATABASE)(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|DROP\s+(?:TABLE|VIEW)(?:\s+IF\s+EXISTS)?|ALTER\s+TABLE)\s+[\w.]+))", re.IGNORECASE)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?!Replicated)(\w*MergeTree)\b")


def for_cluster(statement: str, cluster: str) -> str:
    """One statement for a cluster: ON CLUSTER after its target, Replicated engines."""
    check_identifier(cluster)
    statement = _DDL_TARGET.sub(lambda m: f"{m.group(1)} ON CLUSTER {cluster}", statement,
                                count=1)
    return _ENGINE.sub(lambda m: f"ENGINE = Replicated{m.group(1)}", statement)


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files in name order; `directory` defaults to the packaged ones."""
    folder = directory if directory is not None else resources.files("sinks") / "migrations"
    found = sorted((entry.name, entry) for entry in folder.iterdir() if entry.name.endswith(".sql"))
    for name, _ in found:
        if not _FILE_NAME.match(name):
            raise MigrationError(f"migration file {name!r} must be named NNNN_snake_case.sql")
    return [Migration(name, entry.read_text(encoding="utf-8")) for name, entry in found]


def migrate(client: Client, database: str, directory: Path | None = None,
            cluster: str | None = None) -> list[str]:
    """Create `database` if needed and apply the migrations not applied yet; return their names.

    `cluster` names a ClickHouse cluster to run them ON (module docstring); None = one server.
    Raises MigrationError naming the file when an applied file changed or a statement fails.
    """
    check_identifier(database)

    def run(statement: str) -> None:
        client.command(for_cluster(statement, cluster) if cluster else statement)

    setup = [f"CREATE DATABASE IF NOT EXISTS {database}",
             f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
             "(name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
             "ENGINE = MergeTree ORDER BY name"]
    for statement in setup:
        run(statement)
    applied = dict(client.query(
        "SELECT name, any(checksum) FROM {db:Identifier}.schema_migrations GROUP BY name",
        parameters={"db": database}).result_rows)
    done: list[str] = []
    for migration in load_migrations(directory):
        recorded = applied.get(migration.name)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.name} changed after it was applied to {database} "
                    f"(checksum {recorded[:12]} recorded, {migration.checksum[:12]} now); "
                    "restore it and put the change in a new numbered file")
            continue
        for statement in migration.statements(database, cluster):
            try:
                client.command(statement)
            except Exception as exc:  # noqa: BLE001 - report the file, keep the cause
                raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
        client.insert(f"{database}.schema_migrations", [(migration.name, migration.checksum)],
                      column_names=["name", "checksum"])
        done.append(migration.name)
    if directory is None:
        apply_derived(client, database, run)
    return done
