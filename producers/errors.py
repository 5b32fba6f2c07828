"""Errors of the producers: each message says what went wrong and where, for a person to fix."""

from __future__ import annotations


class ProducerError(Exception):
    """Base of every error raised by the producers package."""


class SimulationConfigError(ProducerError, ValueError):
    """A fleet configuration that cannot produce a valid simulation."""


class ReplayFormatError(ProducerError, ValueError):
    """One line of a replay file is not a valid meter event.

    Carries the line number and the field so the dead letter and the log line can name them.
    """

    def __init__(self, line_no: int, field: str | None, problem: str) -> None:
        self.line_no = line_no
        self.field = field
        self.problem = problem
        where = f"line {line_no}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


class PublishError(ProducerError):
    """Kafka did not accept every message: raised at flush, with the first broker error."""


class GatewaySecurityError(ProducerError, ValueError):
    """The gateway's charger allow-list or TLS files cannot be used: says which file, entry
    and why."""
