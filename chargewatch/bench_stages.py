"""Benchmark stages that must run in a process of their own (a Faust worker owns its process).

`python -m chargewatch.bench_stages bare|processor CONFIG EXPECTED` consumes the bench topic
and prints one JSON line: how many it read and over how many seconds, timed from the first
message (or batch) to the last, so worker start-up and group joins are not counted. The
processor stage also prints `cpu_us_per_event`: the CPU of the worker and its stitching
processes per event, over the batches after the first (it is taken when the first ends).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import faust
from faust.types import TP
from faust.worker import Worker

from chargewatch.proc_cpu import tree_cpu_seconds
from infra.kafka_config import faust_credentials
from infra.settings import load_settings
from infra.topics import Topics
from processors.app import create_app
from processors.batch import BatchCounts


def _finish(count: int, first: float, last: float, **extras: float) -> None:
    print(json.dumps({"count": count, "seconds": last - first, **extras}), flush=True)
    os._exit(0)  # a Faust worker has no cheap clean stop; the result is already printed


def bare_agent(settings_path: Path, expected_messages: int) -> None:
    """A Faust agent that only iterates raw bytes: the framework's own ceiling."""
    settings = load_settings(settings_path)
    bootstrap = settings.kafka.bootstrap_servers or ""
    app = faust.App(f"{settings.kafka.namespace}-bare", broker=f"kafka://{bootstrap}",
                    broker_credentials=faust_credentials(settings.kafka),
                    store="memory://", web_enabled=False,
                    topic_partitions=settings.kafka.partitions,
                    broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
                    consumer_auto_offset_reset="earliest", topic_replication_factor=1,
                    datadir=str(settings.processor.data_dir))
    topic = app.topic(Topics(settings.kafka.namespace).meter_events, value_serializer="raw",
                      key_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(topic, concurrency=1)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream.events():
            if seen["n"] == 0:
                seen["first"] = time.perf_counter()
            seen["n"] += 1
            if seen["n"] >= expected_messages:
                _finish(seen["n"], seen["first"], time.perf_counter())

    @app.task
    async def quiet() -> None:
        logging.getLogger().setLevel(logging.WARNING)

    _run(app)


def processor(settings_path: Path, expected_events: int) -> None:
    """The real processor app (decode, stitch, IDs, pricing, publish, table writes).

    With `expected_events` 0 it is one of several workers sharing the topic: it never stops
    and prints its running count and the time after every batch, for `chargewatch bench
    scale` to add up (perf_counter is CLOCK_MONOTONIC on Linux: one clock for all processes).
    """
    settings = load_settings(settings_path)
    seen = {"n": 0, "first": 0.0, "cpu_from": 0.0, "n_from": 0}

    def on_batch(counts: BatchCounts, started: float) -> None:
        if seen["n"] == 0:
            seen["first"] = started
            seen["cpu_from"], seen["n_from"] = tree_cpu_seconds(os.getpid()), counts.events_read
        seen["n"] += counts.events_read
        if expected_events == 0:
            print(json.dumps({"count": seen["n"], "at": time.perf_counter()}), flush=True)
        elif seen["n"] >= expected_events:
            after_first = seen["n"] - seen["n_from"]
            cpu = tree_cpu_seconds(os.getpid()) - seen["cpu_from"]
            _finish(int(seen["n"]), seen["first"], time.perf_counter(),
                    cpu_us_per_event=cpu * 1e6 / after_first if after_first else float("nan"))

    app = create_app(settings, settings.kafka.bootstrap_servers or "", on_batch=on_batch)
    if expected_events == 0:
        _report_partitions(app, Topics(settings.kafka.namespace).meter_events)
    _run(app)


def _report_partitions(app: faust.App, topic: str) -> None:
    """Print the partitions of `topic` this worker owns after every rebalance step, so that
    `chargewatch bench scale` publishes once the group is whole."""
    owned: set[int] = set()

    def report() -> None:
        print(json.dumps({"owns": sorted(owned)}), flush=True)

    async def on_assigned(sender: object, assigned: set[TP], **_: object) -> None:
        owned.update(tp.partition for tp in assigned if tp.topic == topic)
        report()

    async def on_revoked(sender: object, revoked: set[TP], **_: object) -> None:
        owned.difference_update(tp.partition for tp in revoked if tp.topic == topic)
        report()

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)


def _run(app: faust.App) -> None:
    Worker(app, loglevel=logging.WARNING, quiet=True,
           redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    stage, config, expected = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    sys.argv = sys.argv[:1]
    {"bare": bare_agent, "processor": processor}[stage](config, expected)
