"""The grant statements `chargewatch grant` sends: shape, least privilege, no plaintext secret."""

from __future__ import annotations

import hashlib

import pytest

from sinks.access import (
    BI_GRANTS,
    SINK_GRANTS,
    Account,
    access_statements,
    bi_role,
    role_grants,
    scrub,
    sink_role,
)
from sinks.errors import AccessSetupError

pytestmark = pytest.mark.unit

ACCOUNTS = [Account("grafana", "bi-Secret-1", "cw_bi"), Account("sink", "sink-Secret-2", "cw_sink")]


def test_passwords_leave_only_as_salted_sha256() -> None:
    text = "\n".join(access_statements("cw", ACCOUNTS, salt="5a17"))
    assert "bi-Secret-1" not in text and "sink-Secret-2" not in text
    digest = hashlib.sha256(b"bi-Secret-1" + b"5a17").hexdigest()
    assert f"CREATE USER IF NOT EXISTS grafana IDENTIFIED WITH sha256_hash BY '{digest}' " \
           "SALT '5a17'" in text


def test_every_run_picks_a_fresh_salt() -> None:
    assert access_statements("cw", ACCOUNTS) != access_statements("cw", ACCOUNTS)


def test_roles_are_per_database_and_grants_replace_old_ones() -> None:
    statements = access_statements("cw", ACCOUNTS, salt="s")
    assert (bi_role("cw"), sink_role("cw")) == ("cw_bi", "cw_sink")
    assert statements[:4] == [
        "CREATE ROLE IF NOT EXISTS cw_bi",
        f"{role_grants(BI_GRANTS, 'cw')} TO cw_bi WITH REPLACE OPTION",
        "CREATE ROLE IF NOT EXISTS cw_sink",
        f"{role_grants(SINK_GRANTS, 'cw')} TO cw_sink WITH REPLACE OPTION",
    ]
    assert "GRANT cw_bi TO grafana WITH REPLACE OPTION" in statements
    assert "ALTER USER sink DEFAULT ROLE cw_sink" in statements


def test_cluster_mode_runs_every_statement_on_the_cluster() -> None:
    statements = access_statements("cw", ACCOUNTS, cluster="main", salt="s")
    assert all(" ON CLUSTER main" in s for s in statements)


def test_bi_reads_only_and_never_raw_tables() -> None:
    assert {p for g in BI_GRANTS for p in g.privileges} == {"SELECT"}
    tables = {g.table for g in BI_GRANTS}
    assert not tables & {"sink_batches", "session_updates", "schema_migrations"}
    (dead,) = [g for g in BI_GRANTS if g.table == "dead_letters"]
    assert dead.columns and "original" not in dead.columns and "original_key" not in dead.columns


def test_sink_cannot_change_or_remove_anything() -> None:
    privileges = {p for g in SINK_GRANTS for p in g.privileges}
    assert not privileges & {"ALTER", "DROP", "TRUNCATE", "OPTIMIZE", "ALL"}
    rollups = {"station_daily", "hourly_load", "vehicle_monthly", "session_keys"}
    assert not {g.table for g in SINK_GRANTS if "INSERT" in g.privileges} & rollups


@pytest.mark.parametrize("bad", ["cw; DROP TABLE x", "1cw", "a-b"])
def test_identifiers_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid ClickHouse"):
        access_statements(bad, [])
    with pytest.raises(ValueError, match="not a valid ClickHouse"):
        access_statements("cw", [Account(bad, "pw", "cw_bi")])


def test_an_account_without_password_is_refused() -> None:
    with pytest.raises(AccessSetupError, match="no password set for ClickHouse user grafana"):
        access_statements("cw", [Account("grafana", "", "cw_bi")])


def test_scrub_hides_hashes_and_url_credentials() -> None:
    digest = "ab" * 32
    text = (f"Syntax error at position 88 ('{digest}' SALT 'x') talking to "
            "http://admin:pa55@ch:8123/?q=1")
    assert scrub(text) == ("Syntax error at position 88 ('***' SALT 'x') talking to "
                           "http://admin:***@ch:8123/?q=1")
