"""`chargewatch bench gateway`: OCPP messages/s of one gateway process, the answer latency,
and where the gateway's time goes.

One `chargewatch gateway` process on the embedded broker; `--chargers` simulated chargers
(half OCPP 1.6, half 2.0.1) over real websockets from this process. Three phases:
1. closed loop (each charger sends its next reading when answered): messages/s per gateway
   process, with the gateway's CPU per thread from /proc over the same window;
2. readings offered at half that rate: the answer latency of a gateway with headroom;
3. a second gateway process profiled over a closed loop: its event-loop thread's time by
   bucket (cProfile) and the `ocpp` library's schema validation in its executor threads
   (thread CPU time); the profiler slows the Python code, so only the shares are meant.
From phase 1 it sizes the gateway replicas for a network of `NETWORK_CONNECTORS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chargewatch.bench_reports import percentile
from chargewatch.embedded import EmbeddedBroker, child_options, free_port, stop_child
from chargewatch.worker import write_config
from infra.clock import now_ms
from infra.errors import StackError
from infra.settings import Settings, load_settings

if TYPE_CHECKING:  # the CLI imports this module: websockets only when the bench runs
    from chargewatch.bench_gateway_load import LoadCharger, Tally

NETWORK_CONNECTORS = 100_000
READING_INTERVAL_S = 30
OTHER_MESSAGES_SHARE = 0.2
"""Transaction, status, authorize and heartbeat messages on top of the readings, assumed:
a session of two hours at a 30 s interval sends 240 readings and about 8 other messages
(3 %); heartbeats every 300 s per station add ~17 % at one connector per station."""
HEADROOM = 0.5
"""Plan each replica at half its measured rate: reconnect storms after an outage and
chargers uploading what they kept offline arrive at several times the steady rate."""

BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle: waiting for the network", ("'poll' of 'select.epoll",)),
    ("ocpp: case conversion (re), routing, dataclasses",
     ("/ocpp/", "/re/", "re.Pattern", "/inspect.py", "dataclasses.py")),
    ("JSON encode/decode", ("/json/", "_json", "orjson")),
    ("websockets: permessage-deflate (zlib)", ("zlib",)),
    ("websockets: framing, protocol", ("/websockets/",)),
    ("socket send/recv (kernel)", ("_socket", "_ssl")),
    ("Kafka produce (hand-off to librdkafka)", ("confluent_kafka", "cimpl", "publisher.py",
                                                "ocpp_delivery.py")),
    ("ChargeWatch: mapping, Avro encoding", ("/producers/", "/schemas/", "fastavro",
                                             "/charging/", "/infra/")),
    ("asyncio loop, futures, thread hand-offs",
     ("/asyncio/", "_asyncio", "selectors.py", "_contextvars", "concurrent/futures",
      "threading.py", "_queue")),
)
"""Profile entries of the event-loop thread go to the first bucket one of whose markers their
file or name holds. The stdlib entries under ocpp (re, inspect, dataclasses) are the ocpp
library's: its camelCase/snake_case conversion and handler calls (their callers, checked in
the profile). The ocpp library's JSON-schema validation runs in executor threads, which
cProfile does not see: it is timed apart (`VALIDATION`)."""
VALIDATION = "ocpp: JSON-schema validation (executor threads)"


@dataclass(frozen=True)
class ThreadCpu:
    """CPU seconds of a process's threads: the event loop (main), librdkafka, the rest."""

    main: float
    librdkafka: float
    other: float

    @classmethod
    def of(cls, pid: int) -> ThreadCpu:
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = {"main": 0.0, "librdkafka": 0.0, "other": 0.0}
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                used = (int(fields[11]) + int(fields[12])) / ticks
                kind = ("main" if task.name == str(pid) else
                        "librdkafka" if name.startswith("rdk:") else "other")
                seconds[kind] += used
        return cls(**seconds)

    def minus(self, before: ThreadCpu) -> ThreadCpu:
        return ThreadCpu(self.main - before.main, self.librdkafka - before.librdkafka,
                         self.other - before.other)


@contextlib.contextmanager
def gateway_process(settings: Settings, run_dir: Path, name: str,
                    profile_out: Path | None = None) -> Iterator[tuple[int, int]]:
    """`chargewatch gateway` in a process of its own (optionally under cProfile): yields its
    PID and port; stopped by its PID."""
    port = free_port()
    config = write_config(settings, run_dir / f"{name}-config.json")
    command = [sys.executable, "-m", "chargewatch.bench_gateway", str(config), str(port),
               str(profile_out or "")]
    with (run_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   **child_options())
    try:
        _wait_listening(process, port, run_dir / f"{name}.log")
        yield process.pid, port
    finally:
        stop_child(process, 60)


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"gateway exited with code {process.returncode}; see {log}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.1)
    raise StackError(f"gateway did not listen on port {port} within 60 s; see {log}")


def serve(config: Path, port: int, profile_out: str) -> None:
    """The gateway command in this process; with `profile_out`, profiled from SIGUSR1 to
    SIGUSR2 (the measured window only) and the stats written there."""
    import cProfile

    from chargewatch.gateway_cli import cmd_gateway

    profiler = cProfile.Profile()
    if profile_out:
        validation = _time_validation()
        signal.signal(signal.SIGUSR1, lambda *_: (validation.clear(), profiler.enable()))
        signal.signal(signal.SIGUSR2, lambda *_: (
            profiler.disable(), profiler.dump_stats(profile_out),
            Path(profile_out + ".validation").write_text(str(sum(validation)))))
    cmd_gateway(load_settings(config), argparse.Namespace(host="127.0.0.1", port=port))


def _time_validation() -> list[float]:
    """Wrap the ocpp library's schema validation (run in executor threads) to note each
    call's thread CPU time: the bench's instrument, in the bench's gateway process only."""
    from ocpp import messages

    spent: list[float] = []
    validate = messages._validate_payload

    def timed(*args: object) -> None:
        started = time.thread_time()
        try:
            validate(*args)  # type: ignore[arg-type]
        finally:
            spent.append(time.thread_time() - started)

    messages._validate_payload = timed  # type: ignore[assignment]
    return spent


def time_by_bucket(profile: Path) -> list[tuple[str, float]]:
    """Own time (cProfile tottime) of the event-loop thread, summed by `BUCKETS`, and the
    thread CPU time of the schema validation."""
    totals = {VALIDATION: float(Path(f"{profile}.validation").read_text())}
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, _, _) in stats.items():
        where = f"{filename} {function}"
        bucket = next((name for name, markers in BUCKETS if any(m in where for m in markers)),
                      "other (stdlib, enum, logging)")
        totals[bucket] = totals.get(bucket, 0.0) + own
    return sorted(totals.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class GatewayRun:
    """Phases 1 and 2 on one gateway process."""

    capacity: Tally
    seconds: float
    cpu: ThreadCpu
    half_rate: Tally
    setup_errors: list[str]

    @property
    def rate(self) -> float:
        return self.capacity.messages / self.seconds

    @property
    def ceiling(self) -> float:
        """Messages per CPU-second of the threads that run Python (librdkafka's run C):
        one interpreter lock, so at most one core's worth of them."""
        return self.capacity.messages / (self.cpu.main + self.cpu.other)


def _chargers(url: str, count: int, prefix: str) -> list[LoadCharger]:
    from chargewatch.bench_gateway_load import LoadCharger

    t0 = now_ms() // 1000 * 1000 - 2 * 3_600_000  # readings stay in the charger's past
    return [LoadCharger(url, f"{prefix}-{n:05d}", "ocpp1.6" if n % 2 == 0 else "ocpp2.0.1",
                        t0) for n in range(count)]


async def _each(chargers: list[LoadCharger], step: str, tally: Tally) -> None:
    """`open` or `close` every charger, 50 at a time (no connection storm)."""
    gate = asyncio.Semaphore(50)

    async def one(charger: LoadCharger) -> None:
        async with gate:
            await getattr(charger, step)(tally)

    await asyncio.gather(*(one(c) for c in chargers))


async def measure(url: str, pid: int, chargers: int, seconds: float) -> GatewayRun:
    from chargewatch.bench_gateway_load import Tally, closed_loop, paced

    load = _chargers(url, chargers, f"BG{uuid.uuid4().hex[:4]}")
    setup = Tally()
    await _each(load, "open", setup)
    before = ThreadCpu.of(pid)
    capacity, elapsed = await closed_loop(load, seconds)
    cpu = ThreadCpu.of(pid).minus(before)
    half = await paced(load, capacity.messages / elapsed / 2, seconds)
    await _each(load, "close", setup)
    return GatewayRun(capacity, elapsed, cpu, half, setup.errors)


async def profile(url: str, pid: int, chargers: int, seconds: float, out: Path) -> None:
    from chargewatch.bench_gateway_load import Tally, closed_loop

    load = _chargers(url, chargers, f"BP{uuid.uuid4().hex[:4]}")
    setup = Tally()
    await _each(load, "open", setup)
    os.kill(pid, signal.SIGUSR1)
    await closed_loop(load, seconds)
    os.kill(pid, signal.SIGUSR2)
    await _each(load, "close", setup)
    for _ in range(100):
        if out.exists() and Path(f"{out}.validation").exists():
            return
        await asyncio.sleep(0.1)
    raise StackError(f"the profiled gateway wrote no profile to {out}")


def _settings(bootstrap: str, run_dir: Path, partitions: int) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap, "namespace": f"bgw{uuid.uuid4().hex[:6]}",
               "partitions": partitions},
        clickhouse={"url": f"chdb://{run_dir.resolve() / 'chdb'}"},
        # the bench sends a charger's readings as fast as it is answered, not every 30 s
        gateway={"max_messages_per_s": 1e6, "burst_messages": 1_000_000})


def _dead_letters(settings: Settings) -> int:
    from infra.kafka_config import client_config
    from infra.topics import Topics, read_to_end

    topic = Topics(settings.kafka.namespace).dead_letters
    return len(read_to_end(client_config(settings.kafka, settings.kafka.bootstrap_servers),
                           topic, list(range(settings.kafka.partitions))))


def run_gateway_bench(chargers: int, seconds: float, run_dir: Path,
                      partitions: int = 4) -> list[tuple[str, str, str]]:
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / f"gateway-{uuid.uuid4().hex[:6]}.prof"
    with EmbeddedBroker(log_path=run_dir / "broker.log") as broker:
        settings = _settings(broker.bootstrap_servers, run_dir, partitions)
        with gateway_process(settings, run_dir, "gateway") as (pid, port):
            run = asyncio.run(measure(f"ws://127.0.0.1:{port}", pid, chargers, seconds))
        dead = _dead_letters(settings)
        profiled = _settings(broker.bootstrap_servers, run_dir, partitions)
        with gateway_process(profiled, run_dir, "gateway-profiled", out) as (pid, port):
            asyncio.run(profile(f"ws://127.0.0.1:{port}", pid, chargers, seconds, out))
    errors = run.setup_errors + run.capacity.errors + run.half_rate.errors
    if errors:
        raise StackError(f"{len(errors)} calls answered with an error, e.g. {errors[0]}")
    return _rows(run, chargers, dead) + _profile_rows(time_by_bucket(out)) + _sizing(run)


def _latency(tally: Tally) -> str:
    return (f"p50 {percentile(tally.latencies, 0.5):,.1f} ms, "
            f"p99 {percentile(tally.latencies, 0.99):,.1f} ms")


def _rows(run: GatewayRun, chargers: int, dead: int) -> list[tuple[str, str, str]]:
    cpu, busy = run.cpu, run.cpu.main + run.cpu.librdkafka + run.cpu.other
    half = run.half_rate
    return [
        ("OCPP messages/s, one gateway process (closed loop)", f"{run.rate:,.0f}",
         f"{chargers} chargers (1.6 and 2.0.1), {run.capacity.readings:,} readings + "
         f"{run.capacity.transaction:,} other in {run.seconds:.1f} s"),
        ("answer latency, closed loop", _latency(run.capacity), "saturated: mostly queueing"),
        ("answer latency at half that rate", _latency(half),
         f"{half.messages:,} readings offered at {run.rate / 2:,.0f}/s"),
        ("gateway CPU, closed loop", f"{busy / run.seconds:.2f} cores",
         f"event loop {cpu.main / run.seconds:.2f}, librdkafka "
         f"{cpu.librdkafka / run.seconds:.2f}, other threads {cpu.other / run.seconds:.2f}"),
        ("messages per Python CPU-second", f"{run.ceiling:,.0f}",
         "event loop + validation threads, which share the interpreter lock: a process's "
         "ceiling with a core to itself"),
        ("chargers with a dead letter", str(dead), "must be 0: every message mapped"),
    ]


def _profile_rows(buckets: list[tuple[str, float]]) -> list[tuple[str, str, str]]:
    busy = sum(seconds for name, seconds in buckets if not name.startswith("idle"))
    return [(f"gateway time: {name}",
             f"{seconds / busy:.0%}" if not name.startswith("idle") else f"{seconds:.1f} s",
             "of the gateway's busy time, profiled run" if not name.startswith("idle") else
             "the event loop waited, profiled run")
            for name, seconds in buckets]


def _sizing(run: GatewayRun) -> list[tuple[str, str, str]]:
    """Replicas for the network, at `HEADROOM` of the measured rate, plus one spare; and the
    same on the process's ceiling (a gateway with a core to itself)."""
    readings = NETWORK_CONNECTORS / READING_INTERVAL_S
    offered = readings * (1 + OTHER_MESSAGES_SHARE)

    def replicas(rate: float) -> int:
        return math.ceil(offered / (rate * HEADROOM)) + 1

    return [(f"gateway replicas for {NETWORK_CONNECTORS:,} connectors, a reading every "
             f"{READING_INTERVAL_S} s", str(replicas(run.rate)),
             f"{offered:,.0f} msgs/s ({readings:,.0f} readings/s + "
             f"{OTHER_MESSAGES_SHARE:.0%}), each replica at ≤ {HEADROOM:.0%} of the measured "
             f"{run.rate:,.0f}/s, + 1 spare; {replicas(run.ceiling)} at ≤ {HEADROOM:.0%} of the "
             f"ceiling of {run.ceiling:,.0f}/s with a core each")]


def add_bench_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chargers", type=int, default=200, help="simulated chargers")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--run-dir", default=".data/bench-gateway")
    parser.set_defaults(fn=cmd_bench_gateway)


def cmd_bench_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.render import print_rows

    rows = run_gateway_bench(args.chargers, args.seconds, Path(args.run_dir),
                             settings.kafka.partitions)
    print_rows(["measure", "value", "note"], rows,
               title=f"chargewatch bench gateway ({args.chargers} chargers, "
                     f"{args.seconds:g} s a phase)")
    return 0


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
