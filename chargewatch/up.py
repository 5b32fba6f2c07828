"""`chargewatch up`: the local stack in the foreground, for running ChargeWatch yourself.

Starts the embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), a processor worker and the
sink, prints where each listens, writes `.data/stack.json` so commands in a second terminal
find them (chargewatch/discovery.py), and on Ctrl-C or SIGTERM stops everything it
started, by PID, in order. What survives a restart: ClickHouse's data (the chDB folder) and
the embedded broker's meter events (chargewatch/kept_events.py), from which the processor
rebuilds its state at the next start; the broker's other topics, consumer offsets and the
processor's changelog live in the broker's memory and go with it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from chargewatch.discovery import (
    DATA_DIR,
    RunningStack,
    chdb_folder,
    check_chdb_free,
    process_started,
    remove_stack,
    require_kafka,
    running_stack,
    write_stack,
)
from chargewatch.kept_events import KeptEvents
from chargewatch.stack import LocalStack
from infra.errors import ConfigError
from infra.settings import Settings

out = Console(stderr=True, highlight=False, soft_wrap=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_up(settings: Settings, data_dir: Path = DATA_DIR) -> int:
    """Run until Ctrl-C or SIGTERM; 0 after a clean stop, StackError if a part fails."""
    stack = _prepare(settings, data_dir)
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us ignoring it
        signal.signal(signum, _interrupt)
    out.print("starting the local stack…")
    try:
        stack.start()
    except KeyboardInterrupt:
        out.print("interrupted while starting: everything started is stopped")
        return 130
    try:
        write_stack(_describe(stack), data_dir / "stack.json")
        _print_banner(stack, data_dir)
        while True:
            time.sleep(1.0)
            stack.check_alive()
    except KeyboardInterrupt:
        out.print("stopping: processor worker, sink, broker…")
        return 0
    finally:
        remove_stack(data_dir / "stack.json")
        stack.stop()
        out.print("stopped; data kept in " + str(data_dir))


def _prepare(settings: Settings, data_dir: Path) -> LocalStack:
    """The stack to start, once nothing is in its way (one line and exit 2 otherwise)."""
    other = running_stack(data_dir / "stack.json")
    if other is not None:
        raise ConfigError(f"a stack is already running here (pid {other.pid}, Kafka "
                          f"{other.bootstrap_servers}): stop it with Ctrl-C in its terminal first")
    check_chdb_free(settings)
    for port, name in ((settings.processor.web_port, "PROCESSOR__WEB_PORT"),
                       (settings.sink.web_port, "SINK__WEB_PORT")):
        _check_port_free(port, name)
    embedded = not settings.kafka.bootstrap_servers
    if not embedded:
        require_kafka(settings)
    return LocalStack(settings, data_dir / "up", processor_port=settings.processor.web_port,
                      sink_port=settings.sink.web_port,
                      kept=KeptEvents(data_dir / "broker", "up") if embedded else None)


def _check_port_free(port: int, setting: str) -> None:
    if port == 0:
        return
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(f"port {port} is in use (by another stack or program): set "
                              f"CHARGEWATCH_{setting} to a free port") from None


def _describe(stack: LocalStack) -> RunningStack:
    settings = stack.settings
    folder = chdb_folder(settings.clickhouse.url.get_secret_value())
    return RunningStack(
        pid=os.getpid(), pid_started=process_started(os.getpid()),
        bootstrap_servers=stack.bootstrap_servers, namespace=settings.kafka.namespace,
        partitions=settings.kafka.partitions, processor_port=stack.worker_web_port,
        sink_port=stack.sink.web_port if stack.sink else 0,
        chdb_folder=str(folder) if folder else None, database=settings.clickhouse.database,
        broker_pid=stack.broker.pid if stack.broker else None,
        worker_pid=stack.worker.pid if stack.worker else None)


def _print_banner(stack: LocalStack, data_dir: Path) -> None:
    from infra.settings import mask_url

    settings = stack.settings
    url = settings.clickhouse.url.get_secret_value()
    folder = chdb_folder(url)
    database = settings.clickhouse.database
    worker_pid = stack.worker.pid if stack.worker else "-"
    broker = (f"embedded Tansu, pid {stack.broker.pid}, memory only" if stack.broker
              else "configured")
    rows = [
        ("Kafka", f"{stack.bootstrap_servers} ({broker}); topics {settings.kafka.namespace}.*"),
        ("processor", f"http://127.0.0.1:{stack.worker_web_port} (pid {worker_pid}, "
                      f"log {stack.run_dir}/worker.log)"),
        ("sink", f"http://127.0.0.1:{stack.sink.web_port if stack.sink else '-'} "
                 "(in this process: lookups and reports go through it)"),
        ("ClickHouse", f"{folder} (chDB)" if folder else mask_url(url) + f", database {database}"),
    ]
    if stack.kept is not None and stack.broker is not None:
        rows.append(("kept events", f"{stack.kept.folder} ({stack.restored:,} meter-events "
                                    "messages from earlier runs produced back)"))
    out.print("[bold]ChargeWatch is up[/bold] — Ctrl-C stops everything it started.")
    for name, where in rows:
        out.print(f"  {name:<12}{where}")
    out.print(f"Kept across restarts in {data_dir}/: ClickHouse's data and the meter events; "
              "not kept: the broker's other topics, consumer offsets and the processor's "
              "changelog (rebuilt from the meter events at the next start).")
    out.print("From another terminal in this folder: chargewatch simulate --stations 20 · "
              "replay FILE · session ID · cdr ID · report summary · anomalies -f · dead-letters")
