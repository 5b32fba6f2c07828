"""Who may do what in ClickHouse: a read-only role for BI tools, an insert-only one for the sink.

Kept out of the numbered migrations on purpose: users carry passwords, which come from the
settings (secrets) and must never sit in a migration file or in its checksum, and the
embedded chDB engine has no writable access storage (SQL `CREATE ROLE` fails there), so a
migration creating roles would break every embedded run. `chargewatch grant` applies
`access_statements` to a server after `chargewatch migrate`; it is idempotent and also rotates
passwords and replaces a role's grants with exactly the lists below.

Roles are per database (`{database}_bi`, `{database}_sink`), so two deployments on one
server never share rights. Grants name tables one by one (never `{database}.*`), so a table
added later is invisible to BI until it is listed here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import check_identifier
from sinks.errors import AccessSetupError

DEAD_LETTER_PUBLIC_COLUMNS = ("source_topic", "source_partition", "source_offset", "stage",
                              "error", "failed_at", "inserted_at")
"""What BI may see of a dead letter: where and why, never the original bytes or key (raw
charger input, possibly id tags)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One privilege on one table of the database; `columns` narrows a SELECT to those."""

    privileges: tuple[str, ...]
    table: str
    columns: tuple[str, ...] = ()

    def element(self, database: str) -> str:
        """`SELECT(a, b) ON db.t, INSERT ON db.t`: the access element of a GRANT statement."""
        cols = f"({', '.join(self.columns)})" if self.columns else ""
        return ", ".join(f"{p}{cols} ON {database}.{self.table}" for p in self.privileges)


BI_GRANTS: tuple[Grant, ...] = (
    Grant(("SELECT",), "charging_sessions"),
    Grant(("SELECT",), "charging_sessions_latest"),
    Grant(("SELECT",), "station_daily"),
    Grant(("SELECT",), "hourly_load"),
    Grant(("SELECT",), "vehicle_monthly"),
    Grant(("SELECT",), "session_keys"),
    Grant(("SELECT",), "anomalies"),
    Grant(("SELECT",), "dead_letters", DEAD_LETTER_PUBLIC_COLUMNS),
    Grant(("SELECT",), "connector_status"),
    Grant(("SELECT",), "connector_status_intervals"),
    Grant(("SELECT",), "cdrs"),
    Grant(("SELECT",), "stations"),
)
"""The reporting tables and views of docs/bi.md. Not: session_updates (raw running state),
sink_batches, session_updates_in, sessions_in, schema_migrations and derived_objects (internal),
dead_letters' original bytes."""

SINK_GRANTS: tuple[Grant, ...] = (
    Grant(("SELECT", "INSERT"), "charging_sessions"),
    Grant(("SELECT", "INSERT"), "dead_letters"),
    Grant(("SELECT", "INSERT"), "anomalies"),
    Grant(("SELECT", "INSERT"), "session_updates"),
    Grant(("INSERT",), "session_updates_in"),
    Grant(("INSERT",), "sessions_in"),
    Grant(("SELECT", "INSERT"), "sink_batches"),
    Grant(("SELECT", "INSERT"), "cdrs"),
    Grant(("SELECT", "INSERT"), "connector_status"),
    Grant(("SELECT", "INSERT"), "stations"),
    # The sink checks at start that the schema is current (`migrate` with nothing to apply):
    # its CREATE ... IF NOT EXISTS are no-ops on an existing schema but still need the right.
    Grant(("SELECT",), "schema_migrations"),
    Grant(("CREATE TABLE",), "schema_migrations"),
    Grant(("SELECT",), "derived_objects"),
    Grant(("CREATE TABLE",), "derived_objects"),
    Grant(("CREATE DATABASE",), "*"),
)
"""Insert into (and read back, for versions and batch intents) the sink's own tables only:
no ALTER, DROP, TRUNCATE or OPTIMIZE, nothing outside the database. The rollups and
session_keys are written by materialized views, which run with their definer's rights (the
admin who ran the migrations; SQL SECURITY DEFINER, ClickHouse's default since 24.x), so the
sink cannot write a rollup row directly."""


def bi_role(database: str) -> str:
    return f"{check_identifier(database)}_bi"


def sink_role(database: str) -> str:
    return f"{check_identifier(database)}_sink"


def role_grants(grants: tuple[Grant, ...], database: str) -> str:
    """`GRANT <every element>` without a grantee: one statement, so a re-grant is atomic."""
    check_identifier(database)
    return "GRANT " + ", ".join(g.element(database) for g in grants)


@dataclass(frozen=True, slots=True)
class Account:
    """A login to create: its name, its secret, and the one role it gets by default."""

    user: str
    password: str
    role: str


def password_hash(password: str, salt: str) -> str:
    """ClickHouse's `sha256_hash ... SALT`: hex SHA-256 of password + salt."""
    return hashlib.sha256((password + salt).encode()).hexdigest()


def access_statements(database: str, accounts: list[Account], cluster: str | None = None,
                      salt: str | None = None) -> list[str]:
    """Every statement that sets up both roles and the given accounts, in order.

    Passwords leave as salted SHA-256 (`IDENTIFIED WITH sha256_hash`), so the statements,
    the query log and the server's access files never hold a plaintext password. `salt`
    is random unless given (tests).
    """
    on = f" ON CLUSTER {check_identifier(cluster)}" if cluster else ""
    out: list[str] = []
    for role, grants in ((bi_role(database), BI_GRANTS), (sink_role(database), SINK_GRANTS)):
        out.append(f"CREATE ROLE IF NOT EXISTS {role}{on}")
        out.append(f"{role_grants(grants, database).replace('GRANT', f'GRANT{on}', 1)} "
                   f"TO {role} WITH REPLACE OPTION")
    for account in accounts:
        user = check_identifier(account.user)
        if not account.password:
            raise AccessSetupError(f"no password set for ClickHouse user {user}")
        pepper = salt if salt is not None else secrets.token_hex(16)
        identified = (f"IDENTIFIED WITH sha256_hash BY '{password_hash(account.password, pepper)}'"
                      f" SALT '{pepper}'")
        out.append(f"CREATE USER IF NOT EXISTS {user}{on} {identified}")
        out.append(f"ALTER USER {user}{on} {identified}")
        out.append(f"GRANT{on} {account.role} TO {user} WITH REPLACE OPTION")
        out.append(f"ALTER USER {user}{on} DEFAULT ROLE {account.role}")
    return out


def apply_access(client: Client, database: str, accounts: list[Account],
                 cluster: str | None = None) -> list[str]:
    """Run `access_statements` as an admin user; returns what was done, without secrets."""
    done: list[str] = []
    for statement in access_statements(database, accounts, cluster):
        try:
            client.command(statement)
        except Exception as exc:  # noqa: BLE001 - one clear line, never the statement itself
            what = statement.split(" IDENTIFIED", 1)[0]
            raise AccessSetupError(f"{what}: {scrub(str(exc))}") from None
        done.append(statement.split(" IDENTIFIED", 1)[0])
    return done


_HASH = re.compile(r"[0-9a-fA-F]{32,}")
_CREDENTIALS = re.compile(r"(//[^/@\s:]*:)[^@\s/]*@")


def scrub(text: str) -> str:
    """An error text without password hashes, salts or `user:password@` credentials.

    Server errors may quote the statement they failed on; this keeps such quotes harmless.
    """
    return _CREDENTIALS.sub(r"\1***@", _HASH.sub("***", text))
