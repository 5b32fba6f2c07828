"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import connect
from sinks.migrate import migrate


@pytest.fixture
def client(chdb_url: str, database: str) -> Iterator[Client]:
    """A chDB client on a freshly migrated database of its own."""
    opened = connect(chdb_url)
    migrate(opened, database)
    yield opened
    opened.close()
