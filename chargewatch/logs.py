"""Logging for people (text) or for log pipelines (one JSON object per line).

One dictConfig serves the CLI and the Faust worker (which takes it as `logging_config`,
replacing its own coloured handler), so a worker's lines have the configured format too.
Both formats scrub `user:password@` credentials (and password hashes) from every line,
whoever logged it: a client library's error may quote the URL it failed on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
from typing import Any

from infra.kafka_config import RepeatFilter
from sinks.access import scrub

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    formatter: dict[str, Any] = ({"()": JsonFormatter} if log_format == "json"
                                 else {"()": TextFormatter, "format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chargewatch": formatter},
        "filters": {"repeats": {"()": RepeatFilter, "prefixes": ("aiokafka",)}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "chargewatch",
                                "stream": "ext://sys.stderr", "filters": ["repeats"]}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure(level: str, log_format: str) -> None:
    logging.config.dictConfig(logging_config(level, log_format))
