"""Publishes meter events to Kafka: the one place producers talk to a broker.

Built for "never drop, never reorder": the idempotent producer with acks=all keeps one key's
messages in publish order even across retries; a full local queue makes `publish` wait
(serving delivery reports) instead of failing; a message the broker finally refuses is
counted and turned into a `PublishError` at `flush`, so a run can never end quietly short.

With a `PartitionWindow` the events bound for one partition over a few tens of ms go out as
one message (producers/partitioning.py): Faust's per-message cost is then paid once per
window, not once per charger message. Each caller is still told only when Kafka has its
events; at low volume a window holds one event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producers.errors import PublishError
from producers.partitioning import Gathered, PartitionWindow, partition_of
from schemas.errors import EncodeError, RegistryError
from schemas.records import MeterEvent

PRODUCER_DEFAULTS: dict[str, str] = {
    "enable.idempotence": "true",
    "acks": "all",
    "linger.ms": "20",
    "compression.type": "none",
    "partitioner": "murmur2_random",
    "log_level": "4",
}
"""Java-compatible key hashing (murmur2), so every Kafka client agrees on a key's partition.
librdkafka logs warnings and errors only (its info lines report every broker disconnect)."""

DeliveryCallback = Callable[[str | None], None]
"""Told once per message: None when Kafka has it, else the broker's error text. Called from
whichever thread serves delivery reports (`poll`, `flush`, or a full-queue `publish`)."""


@dataclass(frozen=True, slots=True)
class PublishStats:
    """`messages` handed to the producer (events and raw), `sent` meter events in them,
    `delivered`/`failed` messages acknowledged or refused by the broker so far."""

    sent: int
    delivered: int
    failed: int
    messages: int


class EventPublisher:
    """Encodes batches of one station's events and produces them keyed by station id, or,
    with a `window`, gathers them per partition and produces each partition's events as
    one message (keyed by its first event's station, on the partition of its stations)."""

    def __init__(self, conf: dict[str, str], topic: str,
                 encode: Callable[[Sequence[MeterEvent]], bytes],
                 window: PartitionWindow | None = None) -> None:
        self.topic = topic
        self._encode = encode
        self._producer = Producer({**PRODUCER_DEFAULTS, **conf})
        self._window = window
        self._lock = threading.Lock()
        """Held around the window and the produce of what it cuts: the gateway publishes
        from its event loop while its delivery thread cuts the windows that are due."""
        self._partitions = 0
        self._partition_of: dict[str, int] = {}
        self._sent = 0
        self._messages = 0
        self._delivered = 0
        self._failed = 0
        self._first_error: str | None = None

    def publish(self, key: str, events: Sequence[MeterEvent],
                on_delivery: DeliveryCallback | None = None) -> None:
        """All of `events` (station `key`'s, in order): one message keyed by `key`, or with a
        window, gathered with the partition's other events; `on_delivery` is told once,
        when Kafka has accepted (or refused) every message that carries them."""
        window = self._window
        if window is None:
            self._produce(self.topic, key.encode(), self._encode(events), on_delivery)
            self._sent += len(events)
            return
        partition = self._partition(key)
        size = window.max_events
        chunks = [events[start:start + size] for start in range(0, len(events), size)]
        if on_delivery is not None and len(chunks) > 1:
            on_delivery = _joined(on_delivery, len(chunks))
        with self._lock:
            for chunk in chunks:
                self._send(window.add(partition, chunk, on_delivery))
            self._send(window.due())

    def _partition(self, key: str) -> int:
        """The partition of station `key`: Kafka's own murmur2 placement of the key."""
        found = self._partition_of.get(key)
        if found is None:
            found = self._partition_of[key] = partition_of(key.encode(), self.partitions())
        return found

    def partitions(self) -> int:
        """The topic's partition count, asked once (up to 10 s; a long-running publisher such
        as the gateway asks at start, not in the middle of answering a charger)."""
        if not self._partitions:
            self._partitions = self._partition_count()
        return self._partitions

    def _partition_count(self) -> int:
        try:
            topic = self._producer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        except KafkaException as exc:
            raise PublishError(f"{self.topic}: no metadata: {exc.args[0].str()}") from exc
        if topic is None or topic.error is not None or not topic.partitions:
            raise PublishError(f"{self.topic}: no partitions known "
                               f"({topic.error if topic is not None else 'no such topic'})")
        return len(topic.partitions)

    def _send(self, cut: list[Gathered]) -> None:
        for gathered in cut:
            events, callbacks = gathered.events, gathered.callbacks
            try:
                value = self._encode(events)
            except (EncodeError, RegistryError):
                self._send_apart(gathered)
                continue
            self._produce(self.topic, events[0].station_id.encode(), value,
                          _fan_out(callbacks) if callbacks else None, gathered.partition)
            self._sent += len(events)

    def _send_apart(self, gathered: Gathered) -> None:
        """A gathered message that does not encode: each publish call's events as a message
        of their own, so one caller's bad event fails only that caller (told through its
        callback; raised when it has none, as without a window).

        A Schema Registry that cannot be asked (`RegistryError`) is no caller's fault: the
        calls before the first that meets it go out (a single event has a subject of its
        own, which the registry may know already), that call and every later one are told
        the same error without asking again (each ask may wait out the client's retries,
        and the gateway's delivery thread cuts the windows). Nothing escapes to whoever cut
        the window."""
        start, first_error = 0, None
        registry_error: RegistryError | None = None
        for count, callback in gathered.calls:
            events = gathered.events[start:start + count]
            start += count
            try:
                if registry_error is not None:
                    raise registry_error
                value = self._encode(events)
            except (EncodeError, RegistryError) as exc:
                if isinstance(exc, RegistryError):
                    registry_error = exc
                if callback is None:
                    first_error = first_error or exc
                else:
                    callback(f"{self.topic}: {exc}")
                continue
            self._produce(self.topic, events[0].station_id.encode(), value, callback,
                          gathered.partition)
            self._sent += len(events)
        if first_error is not None:
            raise first_error

    def publish_raw(self, topic: str, key: bytes | None, value: bytes | None,
                    on_delivery: DeliveryCallback | None = None) -> None:
        """An already encoded message (e.g. a dead letter; None: a tombstone) on any topic."""
        self._produce(topic, key, value, on_delivery)

    def poll(self, timeout: float) -> int:
        """Serve delivery reports for up to `timeout` seconds; how many were served.

        A long-running producer that awaits each delivery (the OCPP gateway) calls this in
        a loop of its own; batch producers need only `flush`. With a window, it first sends
        the windows that are due, and waits no longer than until the next one is."""
        if self._window is not None:
            with self._lock:
                self._send(self._window.due())
                timeout = min(timeout, self._window.wait_s())
        return self._producer.poll(timeout)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 on_delivery: DeliveryCallback | None = None,
                 partition: int | None = None) -> None:
        report = self._on_delivery if on_delivery is None else \
            lambda error, message: self._report(error, message, on_delivery)
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=report, **where)
                break
            except BufferError:
                self._producer.poll(0.05)  # queue full: let deliveries drain, then retry
            except KafkaException as exc:
                raise PublishError(f"{topic}: message of {len(value or b'')} bytes refused: "
                                   f"{exc.args[0].str()}") from exc
        self._messages += 1
        self._producer.poll(0)

    def _report(self, error: KafkaError | None, message: Message,
                on_delivery: DeliveryCallback) -> None:
        self._on_delivery(error, message)
        on_delivery(None if error is None else f"{message.topic()}: {error.str()}")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self._delivered += 1
            return
        self._failed += 1
        if self._first_error is None:
            self._first_error = f"{message.topic()}: {error.str()}"

    @property
    def stats(self) -> PublishStats:
        return PublishStats(sent=self._sent, delivered=self._delivered, failed=self._failed,
                            messages=self._messages)

    def flush(self, timeout: float = 30.0) -> PublishStats:
        """Send what windows hold, wait for every delivery report; raise `PublishError` if
        any message did not land."""
        if self._window is not None:
            with self._lock:
                self._send(self._window.drain())
        remaining = self._producer.flush(timeout)
        if self._failed:
            raise PublishError(f"{self._failed} of {self._messages} messages were not "
                               f"delivered; first error: {self._first_error}")
        if remaining:
            raise PublishError(f"{remaining} messages still undelivered after {timeout:.0f}s; "
                               "is the broker reachable?")
        return self.stats


def _fan_out(callbacks: list[DeliveryCallback]) -> DeliveryCallback:
    """One message's report to everyone whose events it carries."""
    def report(error: str | None) -> None:
        for callback in callbacks:
            callback(error)
    return report


def _joined(callback: DeliveryCallback, parts: int) -> DeliveryCallback:
    """`callback` told once, after all `parts` messages reported (the first error, if any)."""
    lock = threading.Lock()
    state: dict[str, int | str | None] = {"left": parts, "error": None}

    def report(error: str | None) -> None:
        with lock:
            state["error"] = state["error"] or error
            state["left"] = int(state["left"] or 0) - 1
            if state["left"]:
                return
        callback(state["error"] if isinstance(state["error"], str) else None)
    return report
