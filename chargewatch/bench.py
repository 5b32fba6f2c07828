"""`chargewatch bench pipeline`: throughput and latency, as ratios measured in the same run.

These machines are noisy, so every figure is printed next to its baseline from the same
run on the same topic: a plain confluent-kafka consume loop and a bare Faust agent that
only iterates raw bytes. Run for 1 and for 20 events per message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from chargewatch.embedded import EmbeddedBroker, free_port, stop_child
from chargewatch.proc_cpu import cpu_seconds
from chargewatch.publishing import fleet_config
from chargewatch.render import print_rows
from chargewatch.stack import LocalStack
from chargewatch.worker import write_config
from charging.state import StationState
from infra.kafka_config import client_config
from infra.settings import Settings, load_settings
from infra.topics import Topics, ensure_topics
from processors.stitching_process import build_stitcher
from producers.publisher import PRODUCER_DEFAULTS
from producers.simulator import simulate
from schemas.codec import Codec
from schemas.records import (
    ChargingSession,
    DimensionCost,
    EventKind,
    EventPosition,
    MeterEvent,
    SessionPeriod,
    SessionState,
)

PARTITIONS = 4


@dataclass
class Workload:
    messages: list[tuple[str, list[MeterEvent]]]

    @property
    def events(self) -> int:
        return sum(len(events) for _, events in self.messages)

    @property
    def sessions(self) -> int:
        return sum(1 for _, evs in self.messages for e in evs if e.kind is EventKind.ENDED)


def workload(settings: Settings, events: int, per_message: int,
             stations: int | None = None) -> Workload:
    """The first `events` simulated events, `per_message` consecutive ones of a station to a
    message (full batches), in time order; a station per 1,300 events unless `stations`."""
    config = dataclasses.replace(fleet_config(settings), events_per_message=per_message,
                                 flush_interval_s=10**6,
                                 stations=stations or max(20, events // 1300 + 1))
    taken: list[tuple[str, list[MeterEvent]]] = []
    count = 0
    for station, batch in simulate(config).messages():
        taken.append((station, batch))
        count += len(batch)
        if count >= events:
            break
    return Workload(taken)


def publish(kafka_conf: dict[str, Any], topic: str, load: Workload) -> float:
    codec = Codec()
    producer = Producer({**kafka_conf, "linger.ms": 20,
                         "enable.idempotence": True, "partitioner": "murmur2_random"})
    started = time.perf_counter()
    for station, events in load.messages:
        value = codec.encode_meter_events(events, topic)
        while True:
            try:
                producer.produce(topic, key=station.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    return time.perf_counter() - started


def plain_consume(kafka_conf: dict[str, Any], topic: str,
                  partitions: int) -> tuple[int, float]:
    """Messages read by a bare confluent-kafka loop, timed from assigning the partitions to
    the last message: timing from the first message would leave out what librdkafka
    prefetched before it, which is everything when the topic is small."""
    consumer = Consumer({**kafka_conf, "group.id": f"plain-{uuid.uuid4().hex}",
                         "enable.partition.eof": True, "fetch.queue.backoff.ms": 10})
    done: set[int] = set()
    count, last = 0, 0.0
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    while len(done) < partitions:
        for message in consumer.consume(10_000, 1.0):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                continue
            count += 1
            last = time.perf_counter()
    consumer.close()
    return count, last - started


def stage(name: str, settings: Settings, run_dir: Path, expected: int) -> tuple[int, float]:
    data = stage_data(name, settings, run_dir, expected)
    return int(data["count"]), float(data["seconds"])


def stage_data(name: str, settings: Settings, run_dir: Path, expected: int) -> dict[str, Any]:
    """What a bench stage printed: `count` and `seconds`, and the stage's own extras."""
    config = write_config(settings, run_dir / f"{name}-config.json")
    result = subprocess.run([sys.executable, "-m", "chargewatch.bench_stages", name,
                             str(config), str(expected)],
                            capture_output=True, text=True, timeout=900)
    lines = [line[line.index('{"count"'):] for line in result.stdout.splitlines()
             if '{"count"' in line]
    if not lines:
        raise RuntimeError(f"bench stage {name} failed (exit {result.returncode}): "
                           f"{(result.stdout + result.stderr)[-2000:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def latency_at(settings: Settings, run_dir: Path, load: Workload, rate: float,
               seconds: float) -> tuple[list[float], list[float], float]:
    """Event → session-update latency (ms) with events offered at `rate` events/s, the
    latency (ms) of looking up open sessions by ID on the running worker's web view, and
    the sink process's CPU (cores: its user + system time over the offered time)."""
    with LocalStack(settings, run_dir, with_sink=False) as stack, \
            _sink_process(settings, stack.bootstrap_servers, run_dir) as sink:
        kafka_conf = client_config(settings.kafka, stack.bootstrap_servers)
        reader = _UpdateReader(kafka_conf, stack.topics.session_updates,
                               settings.kafka.fetch_max_wait_ms)
        reader.start()
        time.sleep(8)  # worker and reader joined their groups
        cpu_before, wall_before = cpu_seconds(sink.pid), time.perf_counter()
        _offer(kafka_conf, stack.topics.meter_events, load, rate, seconds, reader.produced)
        time.sleep(1)  # the sink writes what the last second offered
        sink_cores = (cpu_seconds(sink.pid) - cpu_before) / (time.perf_counter() - wall_before)
        lookups = _lookup_open(stack.worker_web_port, reader.seen[-200:])
        until_quiet(lambda: len(reader.seen), quiet_s=3, at_most_s=120)
        reader.stop()
    return reader.latencies, lookups, sink_cores


class _UpdateReader(threading.Thread):
    """Reads session updates and times each against when its last event was offered."""

    def __init__(self, kafka_conf: dict[str, Any], topic: str, fetch_max_wait_ms: int) -> None:
        super().__init__(daemon=True)
        self.produced: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self.seen: list[str] = []
        self._stop_reading = threading.Event()
        self._codec = Codec()
        self._consumer = Consumer({**kafka_conf,
                                   "group.id": f"lat-{uuid.uuid4().hex}",
                                   "auto.offset.reset": "latest",
                                   "fetch.queue.backoff.ms": 10, "session.timeout.ms": 6000,
                                   "fetch.wait.max.ms": fetch_max_wait_ms})
        self._consumer.subscribe([topic])

    def run(self) -> None:
        while not self._stop_reading.is_set():
            # consume(n, timeout) holds what arrived until n messages or the timeout:
            # up to 200 ms of the reader's own on every sample. Wait for one message,
            # then take what is already there without waiting.
            first = self._consumer.poll(0.2)
            if first is None:
                continue
            for message in [first, *self._consumer.consume(1000, 0)]:
                if message.error():
                    continue
                session = self._codec.decode_session(message.value())
                self.seen.append(session.session_id)
                sent = self.produced.get((session.station_id, session.end_ms))
                if sent is not None:
                    self.latencies.append((time.perf_counter() - sent) * 1000)

    def stop(self) -> None:
        self._stop_reading.set()
        self.join(5)
        self._consumer.close()


def _offer(kafka_conf: dict[str, Any], topic: str, load: Workload, rate: float,
           seconds: float, produced: dict[tuple[str, int], float]) -> None:
    """Publish `load` at `rate` events/s for at most `seconds`, noting when each station's
    message went out.

    Offered as ChargeWatch's publisher offers it (idempotent, acks=all, 20 ms linger; the
    linger counts in every sample). The embedded broker's cost grows with the number of
    batches it holds: at 1 ms linger, one record a batch at 4,000 records/s took it to a
    full core and its own p50 from 11 to 400 ms in 30 s.
    """
    codec = Codec()
    producer = Producer({**kafka_conf, **PRODUCER_DEFAULTS})
    started = time.perf_counter()
    sent_events = 0
    for station, events in load.messages:
        due = started + sent_events / rate
        if time.perf_counter() > started + seconds:
            break
        while time.perf_counter() < due:
            time.sleep(0.0005)
        producer.produce(topic, key=station.encode(),
                         value=codec.encode_meter_events(events, topic))
        producer.poll(0)
        produced[(station, events[-1].event_time_ms)] = time.perf_counter()
        sent_events += len(events)
    producer.flush(30)


@contextlib.contextmanager
def _sink_process(settings: Settings, bootstrap: str,
                  run_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`chargewatch sink` in a process of its own, as deployed: in this process it would
    share the interpreter lock with the thread that times the updates."""
    settings = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap}),
        "sink": settings.sink.model_copy(update={"web_port": free_port()})})
    config = write_config(settings, run_dir / "sink-config.json")
    with (run_dir / "sink.log").open("ab") as log:
        sink = subprocess.Popen([sys.executable, "-m", "chargewatch", "sink"],
                                env={**os.environ, "CHARGEWATCH_CONFIG": str(config)},
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        yield sink
    finally:
        stop_child(sink, 30)


def _lookup_open(web_port: int, session_ids: list[str]) -> list[float]:
    """Time `GET /open-sessions/{id}/` on the worker, as `chargewatch session ID` asks it."""
    timings: list[float] = []
    for session_id in session_ids:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{web_port}/open-sessions/{session_id}/", timeout=5):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # closed meanwhile: the same scan, answered 404
                raise
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def memory_per_open_session(settings: Settings, sessions: int = 20_000) -> tuple[float, float]:
    """Python heap and serialized bytes per open session in station state."""
    stitcher = build_stitcher(settings)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    states: dict[str, StationState] = {}
    for n in range(sessions):
        station = f"CS-{n // 4:06d}"
        for i, kind in enumerate((EventKind.STARTED, EventKind.METER)):
            event = MeterEvent(event_id=f"{n}:{i}", station_id=station, connector_id=n % 4 + 1,
                               kind=kind, event_time_ms=1_795_400_000_000 + i * 60_000,
                               receive_time_ms=1_795_400_000_000 + i * 60_000,
                               transaction_id=f"{station}-{n}", seq=i,
                               id_tag="04A2B3C4D5E6F7", vehicle_id="WVWZZZ1JZXW000001",
                               energy_wh=10_000_000.0 + i * 150, power_w=11_000.0, soc_pct=40.0)
            result = stitcher.apply(states.get(station), event,
                                    EventPosition(0, n * 2 + i, 0))
            states[station] = result.state
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    serialized = sum(len(state.to_bytes()) for state in states.values())
    return heap / sessions, serialized / sessions


def sink_rate(settings: Settings, bootstrap: str, sessions: int) -> float:
    """Sessions/s the sink writes into ClickHouse, from its first batch's intent (the
    topic is already full) to caught up."""
    from sinks.clickhouse import connect
    from sinks.migrate import migrate
    from sinks.runner import SinkRunner

    topics = Topics(f"sink{uuid.uuid4().hex[:6]}")
    kafka_conf = client_config(settings.kafka, bootstrap)
    ensure_topics(kafka_conf, topics, PARTITIONS)
    codec = Codec()
    producer = Producer({**kafka_conf, "linger.ms": 20})
    for n in range(sessions):
        start = 1_795_400_000_000 + n * 1000
        session = ChargingSession(
            session_id=f"EV-{n:09d}", version=1, state=SessionState.COMPLETED,
            station_id=f"CS-{n % 500:04d}", connector_id=n % 4 + 1, transaction_id=str(n),
            id_tag="04A2B3C4D5E6F7", vehicle_id="WVWZZZ1JZXW000001",
            start_ms=start, end_ms=start + 3_600_000,
            meter_start_wh=1e7, meter_end_wh=1e7 + 20_000, energy_wh=20_000.0,
            soc_start_pct=20.0, soc_end_pct=80.0, max_power_w=22_000.0, avg_power_w=20_000.0,
            charging_ms=3_000_000, plugged_ms=3_600_000, cost=Decimal("9.00"), currency="EUR",
            event_count=62, cost_excl_vat=Decimal("7.56"), tariff_id="DAY",
            periods=(SessionPeriod(start, 20_000.0, 3_000_000, 0, 0, 1, -1),
                     SessionPeriod(start + 3_000_000, 0.0, 0, 600_000, -1, -1, 2)),
            dimension_costs=(DimensionCost("ENERGY", Decimal("6.72"), Decimal("8.00")),
                             DimensionCost("PARKING_TIME", Decimal("0.84"), Decimal("1.00"))))
        while True:
            try:
                producer.produce(topics.sessions_completed, key=session.session_id.encode(),
                                 value=codec.encode_session(session, topics.sessions_completed))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    client = connect(settings.clickhouse.url.get_secret_value())
    database = f"bench_{uuid.uuid4().hex[:6]}"
    migrate(client, database)
    first_intent: list[float] = []

    def note_first_intent(stage: str, _: object) -> None:
        if stage == "intent" and not first_intent:
            first_intent.append(time.perf_counter())

    runner = SinkRunner({**kafka_conf, "group.id": f"sink-{uuid.uuid4().hex}"},
                        topics.sessions_completed, topics.dead_letters, client, database, codec,
                        batch_size=settings.sink.batch_size, batch_ms=settings.sink.batch_ms,
                        on_step=note_first_intent)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runner.poll_once(0.1)
        if runner.stats.rows_written >= sessions and runner.caught_up():
            break
    runner.close()
    if not first_intent or runner.stats.rows_written < sessions:
        raise RuntimeError(f"the sink benchmark wrote {runner.stats.rows_written} of "
                           f"{sessions} sessions within 300 s")
    return runner.stats.rows_written / (time.perf_counter() - first_intent[0])


def run_pipeline_bench(events: int, run_dir: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    run_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=run_dir / "broker.log") as broker:
        for per_message in (1, 20):
            namespace = f"bench{per_message}x{uuid.uuid4().hex[:6]}"
            settings = load_settings(
                kafka={"bootstrap_servers": broker.bootstrap_servers, "namespace": namespace,
                       "partitions": PARTITIONS},
                clickhouse={"url": f"chdb://{run_dir.resolve() / 'chdb'}",
                            "database": f"b{uuid.uuid4().hex[:8]}"},
                processor={"data_dir": str(run_dir / namespace), "web_port": free_port()})
            topics = Topics(namespace)
            kafka_conf = client_config(settings.kafka, broker.bootstrap_servers)
            ensure_topics(kafka_conf, topics, PARTITIONS)
            load = workload(settings, events, per_message)
            publish(kafka_conf, topics.meter_events, load)
            n, secs = plain_consume(kafka_conf, topics.meter_events, PARTITIONS)
            plain = n * per_message / secs
            n, secs = stage("bare", settings, run_dir, len(load.messages))
            bare = n * per_message / secs
            n, secs = stage("processor", settings, run_dir, load.events)
            full = n / secs
            e2e_settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(
                update={"namespace": namespace + "e"})})
            e2e = end_to_end(e2e_settings, run_dir / f"e2e{per_message}", load)
            lat_settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(
                update={"namespace": namespace + "l"})})
            lat, lookups, _ = latency_at(lat_settings, run_dir / f"lat{per_message}", load,
                                         full / 2, seconds=10)
            lat, lookups = sorted(lat), sorted(lookups)
            lat_e2e, sink_rows = _sink_at(lat_settings, run_dir, load, e2e / 2, per_message)
            rows += [
                (f"{per_message}/msg", "plain confluent-kafka loop", f"{plain:,.0f} ev/s", "1.00"),
                (f"{per_message}/msg", "bare Faust agent", f"{bare:,.0f} ev/s",
                 f"{bare / plain:.2f}"),
                (f"{per_message}/msg", "processor, full logic", f"{full:,.0f} ev/s",
                 f"{full / plain:.3f} of plain, {full / bare:.3f} of bare Faust"),
                (f"{per_message}/msg", "end to end into ClickHouse", f"{e2e:,.0f} ev/s",
                 f"{e2e / plain:.2f}"),
                (f"{per_message}/msg", "latency at half the processor's rate",
                 f"p50 {_pct(lat, 0.5):,.0f} ms, p99 {_pct(lat, 0.99):,.0f} ms",
                 f"{full / 2:,.0f} ev/s, {len(lat)} updates"),
                (f"{per_message}/msg", "latency at half the end-to-end rate",
                 f"p50 {_pct(lat_e2e, 0.5):,.0f} ms, p99 {_pct(lat_e2e, 0.99):,.0f} ms",
                 f"{e2e / 2:,.0f} ev/s, {len(lat_e2e)} updates"),
                *sink_rows,
                (f"{per_message}/msg", "open-session lookup by ID (worker web)",
                 f"p50 {_pct(lookups, 0.5):,.1f} ms, p95 {_pct(lookups, 0.95):,.1f} ms",
                 f"{len(lookups)} lookups"),
            ]
        sink = sink_rate(settings, broker.bootstrap_servers, 100_000)
    heap, serialized = memory_per_open_session(settings)
    rows += [("-", "sink into chDB", f"{sink:,.0f} sessions/s", ""),
             ("-", "memory per open session", f"{heap:,.0f} B heap, {serialized:,.0f} B state",
              "")]
    return rows


def _sink_at(settings: Settings, run_dir: Path, load: Workload, rate: float,
             per_message: int) -> tuple[list[float], list[tuple[str, ...]]]:
    """Latency and the sink's CPU at `rate`, its coalescing off then on (sinks/DESIGN.md),
    same run: the latencies with coalescing on (the default), and rows for both."""
    runs: dict[bool, tuple[list[float], float]] = {}
    for coalesce in (False, True):
        tag = "on" if coalesce else "off"
        varied = settings.model_copy(update={
            "kafka": settings.kafka.model_copy(
                update={"namespace": f"{settings.kafka.namespace}e{tag}"}),
            "sink": settings.sink.model_copy(update={"coalesce": coalesce})})
        lat, _, cores = latency_at(varied, run_dir / f"late{per_message}{tag}", load, rate,
                                   seconds=10)
        runs[coalesce] = (sorted(lat), cores)
    (off, off_cpu), (on, on_cpu) = runs[False], runs[True]
    rows = [(f"{per_message}/msg", "  same, sink coalescing off",
             f"p50 {_pct(off, 0.5):,.0f} ms, p99 {_pct(off, 0.99):,.0f} ms",
             f"{len(off)} updates"),
            (f"{per_message}/msg", "sink CPU at half the end-to-end rate",
             f"{on_cpu:.3f} cores coalescing, {off_cpu:.3f} not",
             f"{on_cpu / off_cpu:.2f} of not coalescing" if off_cpu else "")]
    return on, rows


def until_quiet(count: Callable[[], int], quiet_s: float, at_most_s: float,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once `count()` has not moved for `quiet_s`, or after `at_most_s`: the reader
    has timed every update that was coming, however far the pipeline fell behind. A fixed
    wait cut the sample short exactly when latency was high (the late updates went
    untimed)."""
    start = last_change = clock()
    seen = count()
    while clock() - last_change < quiet_s and clock() - start < at_most_s:
        sleep(min(0.1, quiet_s))
        now = count()
        if now != seen:
            seen, last_change = now, clock()


def _pct(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values` (nan when empty)."""
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def end_to_end(settings: Settings, run_dir: Path, load: Workload) -> float:
    with LocalStack(settings, run_dir) as stack:
        time.sleep(6)  # the worker joins its group before the clock starts
        started = time.perf_counter()
        publish(client_config(settings.kafka, stack.bootstrap_servers),
                stack.topics.meter_events, load)
        stack.wait_for_sessions(load.sessions, timeout_s=900)
        return load.events / (time.perf_counter() - started)


def cmd_bench(settings: Settings, events: int, run_dir: Path,
              gateway_only: bool = False) -> None:
    from chargewatch.bench_window import run_gateway_bench  # it builds on this module

    rows = [] if gateway_only else run_pipeline_bench(events, run_dir)
    rows += run_gateway_bench(events, run_dir)
    print_rows(["events/message", "measure", "value", "ratio"], rows,
               title=f"chargewatch bench pipeline ({events:,} events)")
