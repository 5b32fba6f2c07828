"""Health that tells the truth: what every worker's `/health` and `/ready` answer.

A worker is unhealthy (503, with the reasons) when
- Kafka or ClickHouse has failed, with no success in between, for longer than
  `health.unreachable_s`: one failed call is a blip, a run of them is an outage;
- a partition it reads has lag while its committed offset has not moved for `stall_s`
  (DESIGN.md: "a worker whose committed offsets stop moving while lag is above zero").

The tracker only remembers what the worker tells it (calls that worked or failed, offsets
committed, partition ends seen) and judges on its own clock, so it is tested with plain
numbers. `KafkaProbe` feeds it where nothing else would notice an outage: a worker that is
idle, or frozen in a call that never returns, reports nothing by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

KAFKA = "kafka"
CLICKHOUSE = "clickhouse"


@dataclass
class _Dependency:
    failing_since: float | None = None
    reason: str = ""


@dataclass
class _Partition:
    committed: int | None = None
    end: int | None = None
    moved_at: float = 0.0
    """Last time the committed offset moved, or the partition had no lag: a partition
    caught up for an hour that gets new messages is not stalled at once."""

    @property
    def lag(self) -> int:
        if self.committed is None or self.end is None:
            return 0
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    reasons: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)

    def body(self, **extra: Any) -> dict[str, Any]:
        """The JSON of `/health` and `/ready`: the verdict first, the reasons in words."""
        return {"healthy": self.healthy, "reasons": list(self.reasons), **self.details, **extra}


class HealthTracker:
    """Reachability of the dependencies and commit progress per partition, judged on demand.

    Thread-safe: the worker's loop feeds it while its web thread asks.
    """

    def __init__(self, unreachable_s: float = 30.0, stall_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.unreachable_s = unreachable_s
        self.stall_s = stall_s
        self._clock = clock
        self._lock = threading.Lock()
        self._deps: dict[str, _Dependency] = {}
        self._parts: dict[Hashable, _Partition] = {}

    # -- fed by the worker ---------------------------------------------------------------

    def reached(self, dependency: str) -> None:
        """A call to `dependency` worked: any outage is over."""
        with self._lock:
            self._deps[dependency] = _Dependency()

    def failed(self, dependency: str, reason: str) -> None:
        """A call to `dependency` failed; the outage runs from the first such failure."""
        with self._lock:
            dep = self._deps.setdefault(dependency, _Dependency())
            if dep.failing_since is None:
                dep.failing_since = self._clock()
            dep.reason = reason.splitlines()[0] if reason else "failed"

    def committed(self, key: Hashable, offset: int) -> None:
        """`key` (a topic and partition) has committed (or processed) up to `offset`."""
        with self._lock:
            part = self._parts.setdefault(key, _Partition(moved_at=self._clock()))
            if part.committed != offset:
                part.committed, part.moved_at = offset, self._clock()

    def begin(self, key: Hashable, offset: int) -> None:
        """The first offset read of `key` since it was assigned: reading starts where the
        group committed, so it is the committed offset until a commit says otherwise."""
        with self._lock:
            part = self._parts.setdefault(key, _Partition(moved_at=self._clock()))
            if part.committed is None:
                part.committed = offset

    def end(self, key: Hashable, end_offset: int) -> None:
        """The latest known end (high watermark) of `key`."""
        with self._lock:
            part = self._parts.setdefault(key, _Partition(moved_at=self._clock()))
            was_behind = part.lag > 0
            part.end = end_offset
            if not was_behind:  # caught up until now: the stall clock starts here
                part.moved_at = self._clock()

    def forget(self, keys: Iterable[Hashable]) -> None:
        """Partitions taken away by a rebalance are no longer this worker's to move."""
        with self._lock:
            for key in keys:
                self._parts.pop(key, None)

    # -- read by /health, /ready and /metrics -----------------------------------------

    def failing_s(self) -> dict[str, float]:
        """Seconds each dependency has been failing (0: it works)."""
        now = self._clock()
        with self._lock:
            return {name: 0.0 if dep.failing_since is None else now - dep.failing_since
                    for name, dep in self._deps.items()}

    def partitions(self) -> dict[Hashable, tuple[int | None, int]]:
        """(committed offset, lag) of every partition this worker moves."""
        with self._lock:
            return {key: (part.committed, part.lag) for key, part in self._parts.items()}

    def check(self) -> HealthReport:
        now = self._clock()
        reasons: list[str] = []
        with self._lock:
            for name, dep in sorted(self._deps.items()):
                if dep.failing_since is not None and \
                        now - dep.failing_since > self.unreachable_s:
                    reasons.append(f"{name} unreachable for {now - dep.failing_since:.0f} s "
                                   f"(more than {self.unreachable_s:g} s): {dep.reason}")
            stalled = {key: part for key, part in self._parts.items()
                       if part.lag > 0 and now - part.moved_at > self.stall_s}
            lag = sum(part.lag for part in self._parts.values())
        for key, part in sorted(stalled.items(), key=lambda item: str(item[0])):
            reasons.append(f"commits stalled on {_name(key)} for {now - part.moved_at:.0f} s "
                           f"(more than {self.stall_s:g} s) with lag {part.lag}")
        return HealthReport(not reasons, tuple(reasons), {"lag": lag, "stalled": bool(stalled)})


def _name(key: Hashable) -> str:
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}[{key[1]}]"
    return str(key)


class KafkaProbe:
    """Asks the brokers for metadata, and tells the tracker whether they answered.

    A refused connection fails within `timeout_s`, and so does a broker that accepts the
    connection but never answers (a frozen process, a black-holed network), which no
    consumer callback reports until its socket times out minutes later.
    """

    def __init__(self, conf: dict[str, Any], tracker: HealthTracker,
                 timeout_s: float = 5.0) -> None:
        from confluent_kafka.admin import AdminClient

        quiet = {k: v for k, v in conf.items() if k != "logger"}
        self._admin = AdminClient({**quiet, "log_level": 0, "error_cb": lambda _err: None})
        self._tracker = tracker
        self._timeout_s = timeout_s

    def once(self) -> bool:
        try:
            self._admin.list_topics(timeout=self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
            self._tracker.failed(KAFKA, _kafka_reason(exc))
            return False
        self._tracker.reached(KAFKA)
        return True

    def run(self, stop: threading.Event, every_s: float) -> None:
        """Probe every `every_s` until `stop` is set (a thread's target)."""
        while not stop.is_set():
            self.once()
            stop.wait(every_s)

    def start(self, stop: threading.Event, every_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop, every_s), name="kafka-probe",
                                  daemon=True)
        thread.start()
        return thread


def _kafka_reason(exc: Exception) -> str:
    error = exc.args[0] if exc.args else None
    text = error.str() if hasattr(error, "str") else str(exc)
    return f"no metadata from the brokers: {text}"
