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
