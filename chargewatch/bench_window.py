"""Gateway-shaped traffic in `chargewatch bench pipeline`: the publisher's partition window
on and off, in the same run (issue 18 §1).

An OCPP gateway sends one reading per charger message, from many chargers: one event per
Kafka message, where Faust's own cost per message is the processor's ceiling. Here that
traffic is offered at a fixed rate through `EventPublisher`, as the gateway publishes, once
with the window off (a message per reading) and once with it on (a message per partition
and window), and the processor's rate on what landed is compared with its own rate at 20
events per message, measured in the same run. End to end into ClickHouse, each is published
as fast as the publisher goes, and latency is taken at half that end-to-end rate, with the
window on also at the window-off rate (what the window itself adds at the same load). The
latency reader runs until the updates stop coming, so a pipeline that falls behind shows
its whole tail instead of the part that arrived within a fixed wait.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from chargewatch.bench import (
    PARTITIONS,
    Workload,
    _pct,
    _sink_process,
    _UpdateReader,
    publish,
    stage_data,
    until_quiet,
    workload,
)
from chargewatch.embedded import EmbeddedBroker, free_port
from chargewatch.stack import LocalStack
from infra.kafka_config import client_config
from infra.settings import Settings, load_settings
from infra.topics import Topics, ensure_topics
from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF
from producers.partitioning import PartitionWindow
from producers.publisher import EventPublisher
from schemas.codec import Codec

CHARGERS = 2_000
"""Chargers in the gateway-shaped workload: enough that a window gathers many stations."""
OFFERED = 10_000.0
"""Events/s offered when filling the topics the processor is timed on: what a network of
~300,000 connectors reading every 30 s sends (the window's message size follows from it)."""


def gateway_workload(settings: Settings, events: int, per_message: int = 1) -> Workload:
    """The first `events` readings of `CHARGERS` chargers, `per_message` consecutive ones of
    a charger to a message (1: as a gateway forwards them)."""
    return workload(settings, events, per_message, stations=CHARGERS)


class Offered(NamedTuple):
    messages: int
    """Kafka messages the events took."""
    events: int
    seconds: float
    """From the first event offered to the last delivery acknowledged."""


def offer(kafka_conf: dict[str, Any], topic: str, load: Workload, rate: float | None,
          window: PartitionWindow | None, seconds: float | None = None,
          produced: dict[tuple[str, int], float] | None = None) -> Offered:
    """Publish `load` through the publisher at `rate` events/s (None: as fast as it goes),
    for at most `seconds`. `produced` notes when each station's reading was handed to the
    publisher (the window's wait counts in the latency). librdkafka lingers as long as in
    the gateway (2 ms, not the batch publishers' 20 ms, which came on top of the window)."""
    codec = Codec()
    publisher = EventPublisher({**kafka_conf, "linger.ms": GATEWAY_PRODUCER_CONF["linger.ms"]},
                               topic,
                               lambda events: codec.encode_meter_events(events, topic), window)
    started = time.perf_counter()
    sent = 0
    for station, events in load.messages:
        if rate is not None:
            due = started + sent / rate
            if seconds is not None and due > started + seconds:
                break
            while time.perf_counter() < due:
                time.sleep(0.0005)
        publisher.publish(station, events)
        if produced is not None:
            produced[(station, events[-1].event_time_ms)] = time.perf_counter()
        sent += len(events)
    stats = publisher.flush(120)
    return Offered(stats.messages, sent, time.perf_counter() - started)


def _settings(base: Settings, namespace: str, run_dir: Path) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": base.kafka.bootstrap_servers, "namespace": namespace,
               "partitions": PARTITIONS},
        clickhouse={"url": base.clickhouse.url.get_secret_value(),
                    "database": f"b{uuid.uuid4().hex[:8]}"},
        processor={"data_dir": str(run_dir / namespace), "web_port": free_port()})


class Processed(NamedTuple):
    rate: float
    """Events/s."""
    messages: int
    cpu_us: float
    """CPU of the worker and its stitching processes per event (µs): what a shared
    machine's other load moves much less than the rate."""


def _processor_rate(settings: Settings, run_dir: Path, fill: Any) -> Processed:
    """The processor on a topic `fill(kafka_conf, topic)` filled."""
    kafka_conf = client_config(settings.kafka, settings.kafka.bootstrap_servers or "")
    topics = Topics(settings.kafka.namespace)
    ensure_topics(kafka_conf, topics, PARTITIONS)
    load_events, messages = fill(kafka_conf, topics.meter_events)
    data = stage_data("processor", settings, run_dir, load_events)
    return Processed(data["count"] / data["seconds"], messages, data["cpu_us_per_event"])


def _end_to_end(settings: Settings, run_dir: Path, load: Workload,
                window: PartitionWindow | None) -> float:
    with LocalStack(settings, run_dir) as stack:
        time.sleep(6)  # the worker joins its group before the clock starts
        started = time.perf_counter()
        offer(client_config(settings.kafka, stack.bootstrap_servers),
              stack.topics.meter_events, load, None, window)
        stack.wait_for_sessions(load.sessions, timeout_s=900)
        return load.events / (time.perf_counter() - started)


def _latency(settings: Settings, run_dir: Path, load: Workload, rate: float,
             window: PartitionWindow | None, seconds: float = 10) -> tuple[list[float], float]:
    """Reading → session-update latency (ms), readings offered at `rate` through the
    publisher with `window`, the sink running beside the worker as deployed; and the rate
    the offering loop kept (events/s)."""
    with LocalStack(settings, run_dir, with_sink=False) as stack, \
            _sink_process(settings, stack.bootstrap_servers, run_dir):
        kafka_conf = client_config(settings.kafka, stack.bootstrap_servers)
        reader = _UpdateReader(kafka_conf, stack.topics.session_updates,
                               settings.kafka.fetch_max_wait_ms)
        reader.start()
        time.sleep(8)  # worker and reader joined their groups
        offered = offer(kafka_conf, stack.topics.meter_events, load, rate, window, seconds,
                        reader.produced)
        until_quiet(lambda: len(reader.seen), quiet_s=3, at_most_s=120)
        reader.stop()
    return sorted(reader.latencies), offered.events / offered.seconds


def gateway_rows(base: Settings, run_dir: Path, events: int,
                 offered: float) -> list[tuple[str, ...]]:
    """Rows for gateway-shaped traffic, window off and on, against the processor's own rate
    at 20 events per message of the same chargers, all measured in this run on the broker
    `base` names."""
    window = PartitionWindow(base.publisher.window_ms / 1000 or 0.02,
                             base.publisher.window_max_events)
    tag = uuid.uuid4().hex[:6]
    load = gateway_workload(base, events)
    batched = gateway_workload(base, events, 20)  # the same chargers, 20 to a message

    def fill_batched(conf: dict[str, Any], topic: str) -> tuple[int, int]:
        publish(conf, topic, batched)
        return batched.events, len(batched.messages)

    base20 = _processor_rate(_settings(base, f"gw20x{tag}", run_dir), run_dir, fill_batched)
    rows: list[tuple[str, ...]] = [
        ("gateway", "processor at 20 events/message (baseline)", f"{base20.rate:,.0f} ev/s",
         f"1.00; {_cpu_text(base20.cpu_us, base20.cpu_us)}")]
    shape = f"{len(load.messages):,} readings of {CHARGERS:,} chargers"
    half_off = 0.0
    for name, win in (("window off", None), (f"window {window.window_s * 1000:.0f} ms", window)):
        key = f"gw{'off' if win is None else 'on'}x{tag}"
        run = _processor_rate(
            _settings(base, key, run_dir), run_dir,
            lambda conf, topic, w=win: (load.events,
                                        offer(conf, topic, load, offered, w).messages))
        e2e = _end_to_end(_settings(base, key + "e", run_dir), run_dir / f"{key}e", load, win)
        rows += [
            ("gateway", f"{name}: processor, {offered:,.0f} ev/s offered",
             f"{run.rate:,.0f} ev/s", f"{run.rate / base20.rate:.3f} of 20/msg; "
             f"{_cpu_text(run.cpu_us, base20.cpu_us)}; "
             f"{load.events / run.messages:,.1f} ev/msg ({shape})"),
            ("gateway", f"{name}: end to end into ClickHouse", f"{e2e:,.0f} ev/s", ""),
            _latency_row(f"{name}: latency at half the end-to-end rate", _latency(
                _settings(base, key + "l", run_dir), run_dir / f"{key}l", load, e2e / 2, win)),
        ]
        if win is None:
            half_off = e2e / 2
        else:  # the window's own cost: the same offered load as without it
            rows.append(_latency_row(f"{name}: latency at the window-off rate", _latency(
                _settings(base, key + "s", run_dir), run_dir / f"{key}s", load, half_off, win)))
    return rows


def _cpu_text(cpu_us: float, base_us: float) -> str:
    """The worker's CPU per event, and its ratio to the 20/msg baseline's. NaN when every
    event came in the first batch (the stage times from the end of the first batch)."""
    if math.isnan(cpu_us):
        return "worker CPU n/a (all in the first batch)"
    ratio = "" if math.isnan(base_us) else f" ({cpu_us / base_us:.2f} of 20/msg)"
    return f"worker CPU {cpu_us:.1f} µs/event{ratio}"


def _latency_row(measure: str, timed: tuple[list[float], float]) -> tuple[str, ...]:
    lat, kept = timed
    return ("gateway", measure, f"p50 {_pct(lat, 0.5):,.0f} ms, p99 {_pct(lat, 0.99):,.0f} ms",
            f"{kept:,.0f} ev/s offered, {len(lat):,} updates timed")


def run_gateway_bench(events: int, run_dir: Path,
                      offered: float = OFFERED) -> list[tuple[str, ...]]:
    """The gateway-shaped rows on an embedded broker of their own."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=run_dir / "gateway-broker.log") as broker:
        base = load_settings(kafka={"bootstrap_servers": broker.bootstrap_servers,
                                    "partitions": PARTITIONS},
                             clickhouse={"url": f"chdb://{run_dir.resolve() / 'chdb'}"})
        return gateway_rows(base, run_dir, events, offered)
