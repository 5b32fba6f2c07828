"""Avro containers built from message bodies read back, with fastavro, as the records."""

from __future__ import annotations

from io import BytesIO

import pytest
from fastavro import reader as container_reader
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import default_catalog
from schemas.codec import Codec
from sinks.avro_blocks import container, leading_string_and_int, sourced_container
from tests.unit.test_session_schema import session

pytestmark = pytest.mark.unit

CODEC = Codec()
SCHEMA = default_catalog().current("ChargingSession")


def body(session_id: str, version: int) -> bytes:
    value = CODEC.encode_session(session(session_id=session_id, version=version), "t")
    writer, start = CODEC.writer_of(value)
    assert writer is SCHEMA
    return value[start:]


def test_a_container_holds_the_messages_records() -> None:
    bodies = [body(f"S-{n}", n) for n in range(3)]
    records = list(container_reader(BytesIO(container(SCHEMA, bodies))))
    assert [(r["session_id"], r["version"]) for r in records] == [("S-0", 0), ("S-1", 1),
                                                                  ("S-2", 2)]


@given(topic=st.text(min_size=1, max_size=40), partition=st.integers(0, 2**31 - 1),
       offsets=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=5))
def test_a_sourced_container_adds_where_each_record_was_read(
        topic: str, partition: int, offsets: list[int]) -> None:
    data = sourced_container(SCHEMA, topic, [(partition, offset, body(f"S-{n}", 1))
                                             for n, offset in enumerate(offsets)])
    records = list(container_reader(BytesIO(data)))
    assert [(r["session_id"], r["_topic"], r["_partition"], r["_offset"]) for r in records] == [
        (f"S-{n}", topic, partition, offset) for n, offset in enumerate(offsets)]


@given(session_id=st.text(max_size=60), version=st.integers(-(2**31), 2**31 - 1))
def test_the_leading_id_and_version_are_read_without_decoding(session_id: str,
                                                              version: int) -> None:
    data = body(session_id, version)
    assert leading_string_and_int(data, 0) == (session_id, version)


def test_a_truncated_body_raises() -> None:
    data = body("S-long-enough", 7)
    with pytest.raises((ValueError, EOFError, IndexError)):
        leading_string_and_int(data[:5], 0)

