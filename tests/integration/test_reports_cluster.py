"""Cluster mode: every migration statement, rewritten for ON CLUSTER and Replicated engines,
is valid ClickHouse (parsed by the real engine), and one-server mode is unchanged."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import connect
from sinks.derived_views import DERIVED_TABLE, INPUTS
from sinks.migrate import for_cluster, load_migrations

pytestmark = pytest.mark.integration


@pytest.fixture
def client(chdb_url: str) -> Iterator[Client]:
    opened = connect(chdb_url)
    yield opened
    opened.close()


def test_every_statement_is_rewritten_and_parses(client: Client) -> None:
    ddl = 0
    for migration in load_migrations():
        single = migration.statements("cw")
        clustered = migration.statements("cw", "prod")
        assert len(single) == len(clustered)
        for one, many in zip(single, clustered, strict=True):
            code = "\n".join(line for line in many.splitlines()
                             if not line.lstrip().startswith("--"))
            if code.lstrip().upper().startswith("INSERT"):
                assert many == one  # data runs once, on the server the client talks to
                continue
            ddl += 1
            assert code.count("ON CLUSTER prod") == 1, code
            assert not re.search(r"ENGINE\s*=\s*(?!Replicated)\w*MergeTree", code), code
            # EXPLAIN AST parses without executing: no cluster or Keeper needed.
            client.query(f"EXPLAIN AST {code}")
    assert ddl >= 15


def test_every_derived_statement_is_rewritten_and_parses(client: Client) -> None:
    """The input tables and views `migrate` generates (sinks/derived_views.py) go ON
    CLUSTER too."""
    statements = [DERIVED_TABLE.format(database="cw"),
                  *(s for avro_input in INPUTS for s in avro_input.statements("cw"))]
    for statement in statements:
        clustered = for_cluster(statement, "prod")
        assert clustered.count("ON CLUSTER prod") == 1, clustered
        assert not re.search(r"ENGINE\s*=\s*(?!Replicated)\w*MergeTree", clustered), clustered
        client.query(f"EXPLAIN AST {clustered}")


def test_materialized_view_puts_on_cluster_before_to() -> None:
    statement = "CREATE MATERIALIZED VIEW IF NOT EXISTS d.v TO d.t AS SELECT 1"
    assert for_cluster(statement, "c") == (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS d.v ON CLUSTER c TO d.t AS SELECT 1")
    assert for_cluster("RENAME TABLE d.a TO d.b", "c") == "RENAME TABLE d.a TO d.b ON CLUSTER c"
    assert for_cluster("CREATE TABLE d.t (x UInt8) ENGINE = ReplicatedMergeTree ORDER BY x",
                       "c").count("Replicated") == 1
    with pytest.raises(ValueError, match="not a valid ClickHouse"):
        for_cluster("DROP TABLE d.t", "c; DROP")
