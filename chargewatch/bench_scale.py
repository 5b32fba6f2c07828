"""`chargewatch bench scale --workers 1,2,4`: the processor stage with 1, 2, 4... workers in
one consumer group, in one run, as events/s and the ratio to one worker.

Each count reads the same workload (one event per message, as the gateway sends it) from
a topic of `--partitions` partitions of its own, with a fresh group and fresh state; every
worker keeps its own web port and data folder. The workers start on the empty topic; once
they own every partition between them, the workload is published. The clock starts when
the last worker has processed its first batch and stops when all events are in: the events
before that point are left out of the rate, and the share timed is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from chargewatch.embedded import EmbeddedBroker, child_options, free_port
from chargewatch.worker import write_config
from infra.errors import ConfigError, StackError
from infra.settings import Settings

if TYPE_CHECKING:  # the CLI imports this module: the bench's imports only when it runs
    from chargewatch.bench import Workload


class StageWorker(threading.Thread):
    """One `bench_stages processor` process in progress mode, its (time, count) reports read
    by this thread; stopped with its process group (the worker and its stitching
    processes), by the group's id."""

    def __init__(self, config: Path, log: Path) -> None:
        super().__init__(daemon=True)
        self.reports: list[tuple[float, int]] = []
        self.owns: list[int] = []
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chargewatch.bench_stages", "processor", str(config),
                 "0"], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                text=True, **child_options())
        self.log = log
        self.start()

    def run(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith('{"count"'):
                report = json.loads(line)
                self.reports.append((float(report["at"]), int(report["count"])))
            elif line.startswith('{"owns"'):
                self.owns = json.loads(line)["owns"]

    @property
    def count(self) -> int:
        return self.reports[-1][1] if self.reports else 0

    def count_at(self, moment: float) -> int:
        return max((n for at, n in self.reports if at <= moment), default=0)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def stage_workers(settings: Settings, run_dir: Path, count: int) -> Iterator[list[StageWorker]]:
    workers: list[StageWorker] = []
    try:
        for n in range(count):
            folder = run_dir / f"worker{n}"
            config = write_config(settings.model_copy(update={
                "processor": settings.processor.model_copy(update={
                    "web_port": free_port(), "data_dir": folder / "faust"})}),
                folder / "config.json")
            workers.append(StageWorker(config, folder / "worker.log"))
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def rate_with(settings: Settings, run_dir: Path, count: int, load: Workload,
              timeout_s: float = 900) -> tuple[float, float]:
    """Events/s of `count` workers once all of them process, and the share of the events
    that fell in that window. The workload is published once the group is whole."""
    from chargewatch.bench import publish
    from infra.kafka_config import client_config
    from infra.topics import Topics, ensure_topics

    kafka_conf = client_config(settings.kafka, settings.kafka.bootstrap_servers)
    topics = Topics(settings.kafka.namespace)
    ensure_topics(kafka_conf, topics, settings.kafka.partitions)
    with stage_workers(settings, run_dir, count) as workers:
        deadline = time.monotonic() + timeout_s
        _wait(workers, lambda: _whole(workers, settings.kafka.partitions), deadline,
              "the group to take every partition")
        publish(kafka_conf, topics.meter_events, load)
        _wait(workers, lambda: sum(w.count for w in workers) >= load.events, deadline,
              f"{load.events} events")
        whole = max(w.reports[0][0] for w in workers)
        end = max(w.reports[-1][0] for w in workers)
        before = sum(w.count_at(whole) for w in workers)
        total = sum(w.count for w in workers)
    if end <= whole:
        raise StackError(f"with {count} workers one batch held all events: raise --events")
    return (total - before) / (end - whole), (total - before) / total


def _whole(workers: list[StageWorker], partitions: int) -> bool:
    """Every worker owns partitions, and together each partition once."""
    owned = [p for w in workers for p in w.owns]
    return all(w.owns for w in workers) and sorted(owned) == list(range(partitions))


def _wait(workers: list[StageWorker], done: Callable[[], bool], deadline: float,
          what: str) -> None:
    while not done():
        for worker in workers:
            if worker.process.poll() is not None:
                raise StackError(f"a bench worker exited with code "
                                 f"{worker.process.returncode}; see {worker.log}")
        if time.monotonic() > deadline:
            raise StackError(f"{len(workers)} bench workers: no {what} in time; "
                             f"see {workers[0].log}")
        time.sleep(0.05)


def run_scale_bench(base: Settings, worker_counts: list[int], events: int, partitions: int,
                    run_dir: Path) -> list[tuple[str, ...]]:
    from chargewatch.bench import workload

    run_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, ...]] = []
    with EmbeddedBroker(log_path=run_dir / "broker.log") as broker:
        load: Workload | None = None
        one = 0.0
        for count in worker_counts:
            settings = _settings(base, broker.bootstrap_servers, run_dir, partitions)
            load = load or workload(settings, events, 1)
            rate, share = rate_with(settings, run_dir / settings.kafka.namespace, count, load)
            if count == 1:
                one = rate
            rows.append((str(count), f"{partitions / count:g}", f"{rate:,.0f}",
                         f"{rate / one:.2f}" if one else "-", f"{share:.0%}"))
    return rows


def _settings(base: Settings, bootstrap: str, run_dir: Path, partitions: int) -> Settings:
    """The user's settings (processor tuning included) on a fresh namespace of the bench's
    broker."""
    return base.model_copy(update={
        "kafka": base.kafka.model_copy(update={
            "bootstrap_servers": bootstrap, "namespace": f"scale{uuid.uuid4().hex[:6]}",
            "partitions": partitions}),
        "clickhouse": base.clickhouse.model_copy(update={
            "url": SecretStr(f"chdb://{run_dir.resolve() / 'chdb'}")})})


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts start at 1: {text!r}")
    return counts


def add_bench_scale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=worker_counts, default=[1, 2],
                        help="worker counts, comma-separated (default 1,2)")
    parser.add_argument("--events", type=int, default=200_000, help="events per count")
    parser.add_argument("--partitions", type=int, default=16, help="meter-events partitions")
    parser.add_argument("--run-dir", default=".data/bench-scale")
    parser.set_defaults(fn=cmd_bench_scale)


def cmd_bench_scale(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.render import print_rows

    if max(args.workers) > args.partitions:
        raise ConfigError(f"{max(args.workers)} workers on {args.partitions} partitions: "
                          f"a worker without a partition has nothing to do")
    rows = run_scale_bench(settings, args.workers, args.events, args.partitions, Path(args.run_dir))
    print_rows(["workers", "partitions each", "events/s", "ratio to 1 worker", "events timed"],
               rows, title=f"chargewatch bench scale ({args.events:,} events, 1 a message, "
                           f"{args.partitions} partitions, {os.cpu_count()} cores)")
    return 0
