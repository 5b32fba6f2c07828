"""Errors of the command-line layer and the embedded stack."""


class ChargeWatchError(Exception):
    """An error meant for a person: its message says what went wrong and what to do."""


class StackError(ChargeWatchError):
    """A part of the local stack (broker, ClickHouse, worker) could not start or answer."""


class ConfigError(ChargeWatchError):
    """The configuration is invalid."""


class UsageError(ChargeWatchError):
    """A command was given an option value it cannot use (the message names the option)."""
