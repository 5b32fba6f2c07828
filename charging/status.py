"""Connector status history: which applied meter events become `connector-status` records.

Design: the processor, not the sink, turns STATUS meter events into ConnectorStatus records
on their own topic, and the sink writes them to `connector_status`. The processor is where
an event has already been decoded, validated, deduplicated by position and given a
trustworthy time; a sink reading raw meter-events would decode every reading a second
time to keep the few status events, and would have to repeat (or contradict) the
processor's dead-lettering of bad input.

Every applied status is published, not only changes: events arrive out of order, so a
filter on "differs from the previous one received" could drop the status that ends a
fault (Available@30 received before Faulted@20). Repeats cost a row each and change no
figure: reports sort the history by time and collapse repeats themselves
(charging/station_health.py states the formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charging.rules import StitchRules
from schemas.records import ConnectorStatus, EventKind, MeterEvent


@dataclass(frozen=True, slots=True)
class StatusHistory:
    """Builds the status record of an applied event; holds the clock-skew thresholds only."""

    rules: StitchRules = field(default_factory=StitchRules)
    """The stitcher's rules: a status is dated as the stitcher orders the event."""

    def record(self, event: MeterEvent) -> ConnectorStatus | None:
        """The status record of `event`, or None when it reports no status.

        Call it only for events the stitcher applied (not duplicates, not rejected ones).
        """
        if event.kind is not EventKind.STATUS or not event.status:
            return None
        return ConnectorStatus(
            event_id=event.event_id, station_id=event.station_id,
            connector_id=event.connector_id, status=event.status,
            error_code=event.error_code, time_ms=self.time_of(event),
            event_time_ms=event.event_time_ms, receive_time_ms=event.receive_time_ms)

    def time_of(self, event: MeterEvent) -> int:
        """Event time, or receive time when the charger clock is implausible (the stitcher's
        rule: further ahead than `skew_ahead_ms` or behind than `skew_behind_ms`)."""
        t, received = event.event_time_ms, event.receive_time_ms
        if t - received > self.rules.skew_ahead_ms or received - t > self.rules.skew_behind_ms:
            return received
        return t
