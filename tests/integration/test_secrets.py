"""No secret value reaches a log line, an error message or `config show`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from chargewatch.embedded import free_port
from sinks.access import password_hash
from sinks.clickhouse import connect
from sinks.errors import ClickHouseUnavailable
from tests.cli import run_cli

pytestmark = pytest.mark.integration

URL_PW = "Url-Pw-7f3a9"
BI_PW = "Bi-Pw-51c0e"
SINK_PW = "Sink-Pw-9d2b4"
SECRETS = (URL_PW, BI_PW, SINK_PW)


def _env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "CLICKHOUSE_URL": url, "CHARGEWATCH_LOG_LEVEL": "DEBUG",
            "CHARGEWATCH_CLICKHOUSE__BI_USER": "grafana",
            "CHARGEWATCH_CLICKHOUSE__BI_PASSWORD": BI_PW,
            "CHARGEWATCH_CLICKHOUSE__SINK_USER": "sink",
            "CHARGEWATCH_CLICKHOUSE__SINK_PASSWORD": SINK_PW, **extra}


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    for pw in (BI_PW, SINK_PW):  # nor anything derived from it that would let one guess it
        assert password_hash(pw, "") not in text


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_failed_connection_never_prints_the_password(log_format: str) -> None:
    url = f"http://admin:{URL_PW}@127.0.0.1:{free_port()}"
    for command in (("migrate",), ("grant",)):
        done = run_cli(*command, env=_env(url, CHARGEWATCH_LOG_FORMAT=log_format))
        assert done.returncode == 1, done.stderr
        assert "cannot connect to ClickHouse at http://admin:***@127.0.0.1" in done.stderr
        _assert_clean(done.stdout + done.stderr)


def test_failed_connection_log_records_hold_no_password(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://admin:{URL_PW}@127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG), pytest.raises(ClickHouseUnavailable) as failed:
        connect(url)
    assert caplog.records, "the driver logged nothing: this test would prove nothing"
    _assert_clean("\n".join(r.getMessage() for r in caplog.records) + str(failed.value))


def test_config_show_masks_every_secret() -> None:
    env = _env(f"https://admin:{URL_PW}@ch.example:8443")
    table = run_cli("config", "show", env=env)
    as_json = run_cli("config", "show", "--json", env=env)
    assert table.returncode == as_json.returncode == 0, table.stderr + as_json.stderr
    shown = json.loads(as_json.stdout)["clickhouse"]
    assert shown["url"] == "https://admin:***@ch.example:8443"
    assert shown["bi_user"] == "grafana" and shown["bi_password"] == "**********"
    _assert_clean(table.stdout + table.stderr + as_json.stdout + as_json.stderr)


def test_grant_failure_names_the_statement_not_the_secret(tmp_path: Path) -> None:
    """chDB refuses CREATE USER (no writable access storage): the error path is real."""
    done = run_cli("grant", env=_env(f"chdb://{tmp_path / 'chdb'}"))
    assert done.returncode == 1
    assert "CREATE ROLE IF NOT EXISTS chargewatch_bi: " in done.stderr
    assert "Not enough privileges" in done.stderr
    _assert_clean(done.stdout + done.stderr)
