"""The sink against the real embedded broker and chDB: rows land once, whatever the crash."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition

from chargewatch.embedded import EmbeddedBroker
from infra.topics import Topics, ensure_topics
from schemas.codec import Codec
from schemas.records import ChargingSession, DeadLetter, SessionState
from sinks.batches import Intent
from sinks.runner import SinkRunner

pytestmark = pytest.mark.integration


class Crash(Exception):
    """Stands for the process dying at a chosen step."""


@pytest.fixture
def topics(broker: EmbeddedBroker, namespace: str) -> Topics:
    names = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, names, partitions=2)
    return names


def session(i: int) -> ChargingSession:
    start = 1_717_000_000_000 + i * 60_000
    return ChargingSession(
        session_id=f"S-{i:06d}", version=1, state=SessionState.COMPLETED,
        station_id=f"ST-{i % 7}", connector_id=1 + i % 2, transaction_id=str(i), id_tag=None,
        vehicle_id=f"EV-{i % 11}", start_ms=start, end_ms=start + 1_800_000,
        meter_start_wh=1000.0 * i, meter_end_wh=1000.0 * i + 7500.0, energy_wh=7500.0,
        soc_start_pct=20.0, soc_end_pct=80.0, max_power_w=22000.0, avg_power_w=15000.0,
        charging_ms=1_800_000, plugged_ms=1_800_000, cost=Decimal("3.53"), currency="EUR",
        event_count=12)


def produce(broker: EmbeddedBroker, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for key, value in values:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def produce_sessions(broker: EmbeddedBroker, topics: Topics, ids: range) -> None:
    codec = Codec()
    produce(broker, topics.sessions_completed,
            [(f"S-{i:06d}".encode(), codec.encode_session(session(i), topics.sessions_completed))
             for i in ids])


def runner(broker: EmbeddedBroker, topics: Topics, client: Client, database: str, *,
           batch_size: int = 5000, on_step: Callable[[str, Intent], None] | None = None
           ) -> SinkRunner:
    return SinkRunner({"bootstrap.servers": broker.bootstrap_servers,
                       "group.id": f"{topics.namespace}-sink"},
                      topics.sessions_completed, topics.dead_letters, client, database, Codec(),
                      batch_size=batch_size, batch_ms=200, on_step=on_step)


def run_until_idle(sink: SinkRunner, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while not sink.caught_up():
            assert time.monotonic() < deadline, f"sink not caught up: {sink.stats}"
            sink.poll_once(0.1)
    finally:
        sink.close()


def committed_total(broker: EmbeddedBroker, topics: Topics) -> int:
    """The sink group's committed offsets on the sessions topic, summed over its partitions."""
    probe = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                      "group.id": f"{topics.namespace}-sink"})
    committed = probe.committed([TopicPartition(topics.sessions_completed, p) for p in (0, 1)],
                                timeout=10)
    probe.close()
    return sum(tp.offset for tp in committed)


def count(client: Client, database: str, table: str = "charging_sessions") -> tuple[int, int]:
    """(rows, distinct session ids) without FINAL: duplicates would show here."""
    return client.query(f"SELECT count(), uniqExact(session_id) FROM {database}.{table}"
                        ).result_rows[0]


def test_rows_equal_what_was_produced(broker: EmbeddedBroker, topics: Topics, client: Client,
                                      database: str) -> None:
    produce_sessions(broker, topics, range(300))
    sink = runner(broker, topics, client, database, batch_size=64)
    # ClickHouse "down" at first (its table is missing): the sink retries the same batch.
    client.command(f"RENAME TABLE {database}.charging_sessions TO {database}.away")
    deadline = time.monotonic() + 20
    while sink.stats.retries < 2:
        assert time.monotonic() < deadline, "the failed insert was not retried"
        sink.poll_once(0.1)
    assert sink.stats.rows_written == 0
    client.command(f"RENAME TABLE {database}.away TO {database}.charging_sessions")
    run_until_idle(sink)
    assert count(client, database) == (300, 300)
    assert sink.stats.rows_written == 300 and sink.stats.batches >= 300 // 64
    stored = client.query(f"SELECT session_id, station_id, vehicle_id, cost, start_time, "
                          f"toUnixTimestamp64Milli(end_time), flags FROM {database}."
                          "charging_sessions WHERE session_id = 'S-000042'").result_rows
    s = session(42)
    assert stored[0][:4] == ("S-000042", s.station_id, s.vehicle_id, Decimal("3.53"))
    assert stored[0][5:] == (s.end_ms, [])
    assert committed_total(broker, topics) == 300  # every offset committed, after its insert


def crash_at(stage: str) -> Callable[[str, Intent], None]:
    def die(step: str, intent: Intent) -> None:
        if step == stage:
            raise Crash(intent.token)
    return die


def run_until_crash(sink: SinkRunner) -> str:
    """Poll until the hook's Crash; returns the token of the batch it crashed at."""
    with pytest.raises(Crash) as crashed:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sink.poll_once(0.1)
    sink.close()  # leaves the group without committing the crashed batch
    return str(crashed.value)


def offsets_stored(client: Client, database: str, partition: int) -> list[int]:
    return [row[0] for row in client.query(
        f"SELECT _offset FROM {database}.charging_sessions WHERE _partition = {partition} "
        "ORDER BY _offset").result_rows]


def test_crashes_then_restart_write_every_row_once(broker: EmbeddedBroker, topics: Topics,
                                                  client: Client, database: str) -> None:
    produce_sessions(broker, topics, range(120))
    # 1. Dies after recording the intent of its first batch, before inserting it.
    token = run_until_crash(runner(broker, topics, client, database, batch_size=25,
                                   on_step=crash_at("intent")))
    assert count(client, database) == (0, 0)
    partition, first, last = (int(n) for n in token.rsplit("-", 3)[1:])
    assert last - first + 1 == 25
    # 2. Rebuilds that batch (its own size would be 40), inserts it, dies before the commit.
    #    The other partition's first batch may be inserted too (the writer runs ahead of the
    #    consumer's thread, where the hook fires), but is uncommitted as well.
    run_until_crash(runner(broker, topics, client, database, batch_size=40,
                           on_step=crash_at("inserted")))
    assert offsets_stored(client, database, partition) == list(range(first, last + 1))
    others = offsets_stored(client, database, 1 - partition)
    assert others in ([], list(range(25)), list(range(40)))  # 25: its intent was recorded in 1.
    rows, distinct = count(client, database)
    assert rows == distinct == 25 + len(others)
    # 3. Batches differently again; the recorded intents still cut those batches to the
    #    same ranges, so ClickHouse drops the repeats. No FINAL needed to see no duplicate.
    last_run = runner(broker, topics, client, database, batch_size=5000)
    run_until_idle(last_run)
    assert count(client, database) == (120, 120)
    assert last_run.stats.rows_written == 120  # those stored already dropped as a repeat


def test_undecodable_message_is_dead_lettered_and_good_rows_land(
        broker: EmbeddedBroker, topics: Topics, client: Client, database: str) -> None:
    produce_sessions(broker, topics, range(10))
    produce(broker, topics.sessions_completed, [(b"bad-key", b"\x00not avro at all")])
    produce_sessions(broker, topics, range(10, 20))
    produce(broker, topics.dead_letters, [(b"k", b"garbage on the dead-letters topic")])
    sink = runner(broker, topics, client, database)
    run_until_idle(sink)
    assert count(client, database) == (20, 20)
    assert sink.stats.dead_lettered == 1
    letters = client.query(
        f"SELECT original, original_key, source_topic, stage, error "
        f"FROM {database}.dead_letters FINAL ORDER BY source_topic").result_rows
    assert [row[:4] for row in letters] == [
        ("garbage on the dead-letters topic", "k", topics.dead_letters, "sink"),
        ("\x00not avro at all", "bad-key", topics.sessions_completed, "sink")]
    assert all(row[4] for row in letters)  # each with its reason


class SlowSharedClient:
    """One client for two sinks in one process, as two processes share one server: calls
    take turns, and each Avro insert waits first, so a batch is in flight most of the time."""

    def __init__(self, client: Client, insert_delay_s: float) -> None:
        self._client = client
        self._delay = insert_delay_s
        self._turn = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "raw_insert" and kwargs.get("fmt") == "Avro":
                time.sleep(self._delay)
            with self._turn:
                return method(*args, **kwargs)
        return call


def trickle(broker: EmbeddedBroker, topics: Topics, total: int, seconds: float) -> None:
    codec, producer = Codec(), Producer({"bootstrap.servers": broker.bootstrap_servers})
    for i in range(total):
        producer.produce(topics.sessions_completed, key=f"S-{i:06d}".encode(),
                         value=codec.encode_session(session(i), topics.sessions_completed))
        if i % 20 == 19:
            producer.poll(0)
            time.sleep(seconds * 20 / total)
    assert producer.flush(30) == 0


def test_a_second_sink_joining_mid_insert_leaves_every_row_once(
        broker: EmbeddedBroker, topics: Topics, client: Client, database: str) -> None:
    """The group rebalances while the first sink has a batch in flight (its writer thread
    inserting, its main thread reading on, where the rebalance callbacks run): that batch
    is committed before its partition moves, and the newcomer neither repeats nor skips
    a row. Sessions trickle in for ~8 s so both sinks have work."""
    total = 4000
    feeder = threading.Thread(target=trickle, args=(broker, topics, total, 8.0))
    feeder.start()
    shared = SlowSharedClient(client, insert_delay_s=0.4)
    stop = threading.Event()
    first = runner(broker, topics, shared, database, batch_size=1000)
    threads = [threading.Thread(target=first.run, args=(stop,))]
    threads[0].start()
    deadline = time.monotonic() + 60
    while first.stats.batches < 2:
        assert time.monotonic() < deadline, f"the first sink wrote nothing: {first.stats}"
        time.sleep(0.05)
    second = runner(broker, topics, shared, database, batch_size=1000)  # joins the group now
    threads.append(threading.Thread(target=second.run, args=(stop,)))
    threads[1].start()
    try:
        feeder.join(60)
        while count(client, database) < (total, total) or not (
                first.caught_up() or second.caught_up()):
            assert time.monotonic() < deadline + 60, (count(client, database), first.stats,
                                                      second.stats)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert count(client, database) == (total, total)
    assert second.stats.batches > 0, "the second sink never got a partition"
    assert committed_total(broker, topics) == total


def letter(i: int) -> DeadLetter:
    return DeadLetter(original=f"bad-{i}".encode(), source_topic="meter-events",
                      source_partition=i % 3, source_offset=i, stage="processor",
                      error="unusable", failed_ms=1_717_000_000_000)


def crash_in_coalesced(stage: str, topic: str) -> Callable[[str, Intent], None]:
    """Dies at `stage` of the first insert that coalesced several partitions of `topic`."""
    def die(step: str, intent: Intent) -> None:
        if step == stage and intent.topic == topic and intent.group:
            raise Crash(intent.group)
    return die


def assigned(sink: SinkRunner) -> set[tuple[str, int]]:
    return set(sink._parts)


@pytest.mark.parametrize("stage", ["intent", "inserted"])
def test_a_rebalance_splitting_a_coalesced_batch_leaves_every_row_once(
        broker: EmbeddedBroker, topics: Topics, client: Client, database: str, stage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """One sink records a coalesced insert of both partitions (and, at "inserted", inserts
    it) and dies before committing. The group then holds two members, so each partition's
    range is rebuilt by a different one, alone, with a token the coalesced insert did not
    have: the range probe must find what landed. dead_letters has no dedup of its own
    without FINAL, so a range written twice shows; one written under the group's token
    after the other range was, is dropped, and shows as missing."""
    caplog.set_level(logging.INFO, "chargewatch.sink")
    codec, total = Codec(), 200
    produce(broker, topics.dead_letters,
            [(f"k{i}".encode(), codec.encode_dead_letter(letter(i), topics.dead_letters))
             for i in range(total)])
    produce_sessions(broker, topics, range(total))
    group = run_until_crash(runner(broker, topics, client, database,
                                   on_step=crash_in_coalesced(stage, topics.dead_letters)))
    assert "+" in group  # the crashed insert held both partitions' ranges
    # A plain member holds half the partitions while the next sink joins, so that sink
    # rebuilds one range of the coalesced insert alone; then a second sink takes the rest.
    other = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                      "group.id": f"{topics.namespace}-sink", "enable.auto.commit": False,
                      "session.timeout.ms": 6000})
    other.subscribe([topics.sessions_completed, topics.dead_letters])
    deadline = time.monotonic() + 30
    while not other.assignment():
        assert time.monotonic() < deadline, "the plain member was never assigned"
        other.poll(0.1)
    stop = threading.Event()
    first = runner(broker, topics, client, database, batch_size=60)
    threads = [threading.Thread(target=first.run, args=(stop,))]
    threads[0].start()
    try:
        while len(assigned(first)) != 2:
            assert time.monotonic() < deadline + 30, "the sink never got half the partitions"
            other.poll(0.1)
        while not first.caught_up():
            assert time.monotonic() < deadline + 60, first.stats
            other.poll(0.1)
        second = runner(broker, topics, client, database, batch_size=60)
        threads.append(threading.Thread(target=second.run, args=(stop,)))
        threads[1].start()
        other.close()
        while count(client, database) != (total, total) or letters(client, database)[0] < total \
                or not (first.caught_up() and second.caught_up()):
            assert time.monotonic() < deadline + 120, (first.stats, second.stats)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert letters(client, database) == (total, total)
    assert count(client, database) == (total, total)
    assert sum(rec.getMessage().count("split from its insert") for rec in caplog.records) >= 2


def letters(client: Client, database: str) -> tuple[int, int]:
    """(rows, distinct source offsets) of dead_letters without FINAL."""
    return client.query(f"SELECT count(), uniqExact(source_offset) FROM {database}.dead_letters"
                        ).result_rows[0]
