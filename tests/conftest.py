"""Shared fixtures (one real embedded broker per test run, fresh names per test), and the
suite's rules: every test is marked unit, integration or e2e, and unit tests run under a
short timeout (a hang costs seconds, not the 300 s integration and e2e tests may take)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from chargewatch.embedded import EmbeddedBroker

LAYERS = ("unit", "integration", "e2e")
UNIT_TIMEOUT_S = 20
"""Per unit test, unless the test sets its own `timeout` mark (and says why)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Before `-m` deselects anything: refuse unmarked tests (`make unit` and friends would
    skip them silently), and give unit tests their short timeout."""
    unmarked = [item.nodeid for item in items
                if not any(item.get_closest_marker(layer) for layer in LAYERS)]
    if unmarked:
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) carry none of the marks {', '.join(LAYERS)} (set "
            f"`pytestmark = pytest.mark.unit` or another in the file): "
            + ", ".join(unmarked[:5]) + (" ..." if len(unmarked) > 5 else ""))
    for item in items:
        if item.get_closest_marker("unit") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_S))


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
