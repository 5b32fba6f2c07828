"""Errors of the ClickHouse side: each message says what went wrong and what to do."""

from infra.errors import ChargeWatchError


class SinkError(ChargeWatchError):
    """Base of every error raised under `sinks/`."""


class ClickHouseUnavailable(SinkError):
    """ClickHouse (server or embedded chDB folder) could not be opened or answered."""


class MigrationError(SinkError):
    """A migration file is invalid, failed, or was edited after it was applied."""


class BatchStateError(SinkError):
    """The recorded batch intents contradict what the topic holds (e.g. the topic was recreated)."""


class AccessSetupError(SinkError):
    """Roles or users could not be set up (`chargewatch grant`); the text holds no secret."""
