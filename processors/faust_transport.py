"""Faust tuned for the worker: a configurable fetch wait, and no Monitor sensor.

Faust builds its consumer with `fetch_max_wait_ms=1500`, fixed. A broker that does not
answer a waiting fetch as soon as data arrives (the embedded Tansu broker holds it ~200 ms
whatever arrives meanwhile) then adds that wait to every event's latency, each hop. This
transport lets the app choose the wait (`kafka.fetch_max_wait_ms`).

Faust's Monitor sensor is called for every message and event, in and out, on the thread
that runs the agent; the worker's metrics are its own Prometheus counters
(infra/metrics.py), so the Monitor is taken off the sensor list (Faust still calls it
directly for commits and end offsets, which is rare).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when it builds its fetcher at start(); no public setter.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class TunedApp(faust.App):
    """A faust.App whose stream consumer waits at most `fetch_max_wait_ms` per fetch and
    whose sensors leave out the Monitor."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()  # adds the Monitor to the sensors
        self.sensors.remove(self.monitor)
        return dependencies
