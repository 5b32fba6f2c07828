"""JSON logs: one parseable object per line, exceptions included."""

from __future__ import annotations

import json
import logging

import pytest

from chargewatch.logs import JsonFormatter

pytestmark = pytest.mark.unit


def test_json_lines_carry_level_logger_message_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("chargewatch.sink", logging.ERROR, __file__, 1,
                                   "insert failed for %s", ("batch 7",), exc_info=True)
        record.exc_info = __import__("sys").exc_info()
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "ERROR" and entry["logger"] == "chargewatch.sink"
    assert entry["message"] == "insert failed for batch 7"
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_credentials_in_any_line_are_scrubbed(log_format: str) -> None:
    """A library's error quoting the URL it failed on must not leak the password."""
    import logging.config

    from chargewatch.logs import logging_config

    formatter = logging_config("INFO", log_format)["formatters"]["chargewatch"]
    built = logging.config.DictConfigurator({"version": 1}).configure_formatter(formatter)
    try:
        raise ConnectionError("http://bi:s3cr3t-pw@clickhouse:8123 refused")
    except ConnectionError:
        record = logging.LogRecord("clickhouse_connect", logging.ERROR, __file__, 1,
                                   "connect to %s failed", ("https://sink:hunter2@ch:8443/",),
                                   exc_info=__import__("sys").exc_info())
    line = built.format(record)
    assert "s3cr3t-pw" not in line and "hunter2" not in line
    assert "sink:***@ch:8443" in line and "bi:***@clickhouse" in line
