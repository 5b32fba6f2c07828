"""Errors of the Faust worker: a batch that must not be acked."""


class ProcessorError(Exception):
    """Base of the worker's own errors."""


class PublishFailed(ProcessorError):
    """Kafka did not take a batch's outputs: the batch fails and is replayed, not acked."""


class StitchingFailed(ProcessorError):
    """The stitching process failed a request or is gone: the batch must not be acked."""
