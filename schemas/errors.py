"""Errors of the wire contract.

They are split by what the caller should do next: a `DecodeError` means these bytes can
never be used (dead-letter them with the message); a `RegistryError` means the Schema
Registry could not be asked, so the same bytes may decode later (retry, do not dead-letter);
an `EncodeError` is a bug in the caller's record.
"""

from __future__ import annotations


class CodecError(Exception):
    """Base class of every error raised by the codec, the catalog and the registry client."""


class DecodeError(CodecError):
    """The bytes are not a valid message of the expected record type; the text says why."""


class EncodeError(CodecError, ValueError):
    """The record cannot be put on the wire (out-of-contract values or too many events)."""


class RegistryError(CodecError):
    """The Schema Registry could not be reached or refused a request; retrying may help."""


class SchemaCatalogError(CodecError):
    """The `.avsc` files in `schemas/` are inconsistent; raised at start-up, never per message."""
