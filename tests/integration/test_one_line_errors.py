"""A wrong Kafka address or a chDB folder in use is one line on stderr and exit 2, in
bounded time, for every command that meets it: no librdkafka log flood, no traceback, no
ClickHouse "Code: 76" lock error."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargewatch.embedded import free_port
from tests.cli import run_cli, running_sink

pytestmark = pytest.mark.integration

BOUND_S = 45.0
"""Generous: the commands give up within about a second (refused) or ten (silent)."""


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers (a firewall eating the replies)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def _env(bootstrap: str, tmp_path: Path) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CLICKHOUSE_URL": f"chdb://{tmp_path}/chdb",
            "CHARGEWATCH_PROCESSOR__WEB_PORT": str(free_port()),
            "CHARGEWATCH_SINK__WEB_PORT": str(free_port())}


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e"}\n')
    return {"replay": ["replay", str(events)],
            "simulate": ["simulate", "--stations", "2", "--hours", "1",
                         "--truth", str(tmp_path / "truth.jsonl")],
            "anomalies": ["anomalies"], "worker": ["worker"], "sink": ["sink"],
            "dead-letters": ["dead-letters", "--follow"], "up": ["up"],
            "gateway": ["gateway", "--port", "0"]}


def _assert_one_line_exit_2(args: list[str], env: dict[str, str], address: str,
                            tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(*args, env=env, timeout=BOUND_S + 30, cwd=tmp_path)
    took = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (args, result.stderr[-2000:])
    assert len(lines) == 1, (args, result.stderr[-2000:])
    assert f"cannot use Kafka at {address}" in lines[0], lines[0]
    assert took < BOUND_S, (args, took)


@pytest.mark.parametrize("command", ["replay", "simulate", "anomalies", "worker", "sink",
                                     "dead-letters", "up", "gateway"])
def test_an_unreachable_kafka_is_one_line_and_exit_2(command: str, closed_port: int,
                                                     tmp_path: Path) -> None:
    address = f"127.0.0.1:{closed_port}"
    _assert_one_line_exit_2(_commands(tmp_path)[command], _env(address, tmp_path), address,
                            tmp_path)


def test_a_kafka_that_never_answers_is_one_line_within_the_timeout(tmp_path: Path) -> None:
    with silent_listener() as port:
        address = f"127.0.0.1:{port}"
        _assert_one_line_exit_2(_commands(tmp_path)["replay"], _env(address, tmp_path),
                                address, tmp_path)


def test_a_chdb_folder_in_use_is_one_line_without_clickhouses_lock_error(
        broker, namespace: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "CHARGEWATCH_KAFKA__NAMESPACE": namespace, "CLICKHOUSE_URL": f"chdb://{tmp_path}/ch",
           "CHARGEWATCH_SINK__WEB_PORT": str(port)}
    with running_sink(env, port, rows=0):
        for args in (["migrate"], ["sink"]):
            result = run_cli(*args, env={**env, "CHARGEWATCH_SINK__WEB_PORT": str(free_port())})
            assert result.returncode == 2, result.stderr
            assert "is in use by process" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        report = run_cli("report", "summary", "--json", env=env)  # asks the sink instead
        assert report.returncode == 0, report.stderr
        assert "Code: 76" not in report.stderr + result.stderr
