"""Errors of the domain's rules.

Each message is meant for a person: it says what is wrong and what to do about it. Bad
*input events* are not errors here: the stitcher rejects them with a reason and the worker
dead-letters them. These exceptions are for configuration and state that cannot be used.
"""


class ChargingError(Exception):
    """Base of the domain's own errors."""


class InvalidIdTemplate(ChargingError, ValueError):
    """A session ID template that cannot produce unique IDs (refused at start-up)."""


class PositionOutOfRange(ChargingError, ValueError):
    """An event position outside what `{num}` can encode uniquely (configuration mismatch)."""


class StateDecodeError(ChargingError, ValueError):
    """Serialized station state that this version cannot read."""
