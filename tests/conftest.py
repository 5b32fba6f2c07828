"""Shared fixtures: one real embedded broker per test run, fresh names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from chargewatch.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def namespace() -> str:
    """A random topic namespace so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def database() -> str:
    return f"cw_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One chDB folder per test run: chDB's engine is one per process, with one path.

    Tests stay apart by database name (the `database` fixture).
    """
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"
