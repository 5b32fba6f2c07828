"""Errors of the processors' pure core.

Each message is meant for a person: it says what is wrong and what to do about it. Bad
*input events* are not errors here: the stitcher rejects them with a reason and the agent
dead-letters them. These exceptions are for configuration and state that cannot be used.
"""


class ProcessorError(Exception):
    """Base of the processors' own errors."""


class InvalidIdTemplate(ProcessorError, ValueError):
    """A session ID template that cannot produce unique IDs (refused at start-up)."""


class PositionOutOfRange(ProcessorError, ValueError):
    """An event position outside what `{num}` can encode uniquely (configuration mismatch)."""


class StateDecodeError(ProcessorError, ValueError):
    """Serialized station state that this version cannot read."""


class PublishFailed(ProcessorError):
    """Kafka did not take a batch's outputs: the batch fails and is replayed, not acked."""


class StitchingFailed(ProcessorError):
    """The stitching process failed a request or is gone: the batch must not be acked."""
