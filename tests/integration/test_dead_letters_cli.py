"""`chargewatch dead-letters` on real dead letters: bytes the sink could not decode, read
through the sink's endpoint while it holds chDB and straight from chDB once it stopped;
and the query: newest first within the limit, `--since`, one letter per repeat across runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from chargewatch.dead_letters_cli import query_dead_letters
from chargewatch.embedded import EmbeddedBroker, free_port
from infra.clock import now_ms
from infra.topics import Topics, ensure_topics
from sinks.dead_letter_sink import DEAD_LETTER_COLUMNS
from tests.cli import run_cli, running_sink

pytestmark = pytest.mark.integration

T0 = 1_795_400_000_000


def _letters(result: Any) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_letters_of_the_sink_through_its_endpoint_and_from_chdb(
        broker: EmbeddedBroker, namespace: str, tmp_path: Path) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 2)
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "CHARGEWATCH_KAFKA__NAMESPACE": namespace,
           "CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}", "CHARGEWATCH_SINK__WEB_PORT": str(port)}
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for value in (b"\x00\x00\x00\x00\x07garbage", "ünïcode but not Avro\n".encode()):
        producer.produce(topics.sessions_completed, key=b"EV-1", value=value)
    assert producer.flush(10) == 0
    # 2 rows of the sessions batch become letters; the sink stores them from its own topic.
    with running_sink(env, port, rows=2):
        pass
    with running_sink(env, port, rows=0):  # holding chDB: the command asks the sink
        held = _letters(run_cli("dead-letters", "--json", env=env))
    direct = _letters(run_cli("dead-letters", "--json", "--since", "1h", env=env))
    assert held == direct
    assert [letter["stage"] for letter in direct] == ["sink", "sink"]
    assert {letter["source"] for letter in direct} == {
        f"{topics.sessions_completed}[{p}]@{o}" for p, o in
        ((direct[0]["source_partition"], direct[0]["source_offset"]),
         (direct[1]["source_partition"], direct[1]["source_offset"]))}
    previews = sorted(letter["original_preview"] for letter in direct)
    assert previews == ['"ünïcode but not Avro\\n"',
                        "00 00 00 00 07 67 61 72 62 61 67 65 (binary, 12 bytes)"]
    assert all(letter["error"] for letter in direct)
    later = _letters(run_cli("dead-letters", "--json", "--since",
                             "2999-01-01", env=env))
    assert later == []


def _insert(client: Client, database: str, rows: list[tuple]) -> None:
    client.insert(f"{database}.dead_letters", [(*row, 0, i) for i, row in enumerate(rows)],
                  column_names=DEAD_LETTER_COLUMNS)


def test_newest_within_the_limit_and_repeats_of_a_later_run_once(client: Client,
                                                                 database: str) -> None:
    now = now_ms()
    _insert(client, database, [
        (b"\xc3\x01x", None, "cw-r1.meter-events", 0, 5, "processor", "bad", now - 9000),
        (b"\xc3\x01x", None, "cw-r2.meter-events", 0, 5, "processor", "bad", now - 5000),
        (b"\xc3\x01y", None, "cw-r2.meter-events", 0, 6, "processor", "bad", now - 4000),
        (b"{", None, "file:day-r1.jsonl", -1, 1, "replay", "e", now - 3000),
        (b"{", None, "file:day-r2.jsonl", -1, 1, "replay", "e", now - 2000),
    ])
    letters, total = query_dead_letters(client, database, 0, 10)
    assert total == 4
    assert [(x["source_topic"], x["source_offset"]) for x in letters] == [
        ("cw-r2.meter-events", 5), ("cw-r2.meter-events", 6), ("file:day-r1.jsonl", 1),
        ("file:day-r2.jsonl", 1)]
    newest, total = query_dead_letters(client, database, 0, 2)
    assert total == 4 and [x["source_topic"] for x in newest] == ["file:day-r1.jsonl",
                                                                 "file:day-r2.jsonl"]
    since, total = query_dead_letters(client, database, now - 4500, 10)
    assert total == 3 and since[0]["source_offset"] == 6
