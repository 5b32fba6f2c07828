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

from dataclasses import dataclass

from schemas.records import ConnectorStatus, EventKind, MeterEvent


@dataclass(frozen=True, slots=True)
class StatusHistory:
    """Builds the status record of an applied event."""

    def record(self, event: MeterEvent, time_ms: int | None) -> ConnectorStatus | None:
        """The status record of `event`, or None when it reports no status.

        Call it only for events the stitcher applied (not duplicates, not rejected ones),
        with the time the stitcher dated it by (`StitchResult.time_ms`): a status is dated
        as the stitcher orders the event, by the one judgement of the charger's clock
        (charging/charger_clock.py).
        """
        if event.kind is not EventKind.STATUS or not event.status or time_ms is None:
            return None
        return ConnectorStatus(
            event_id=event.event_id, station_id=event.station_id,
            connector_id=event.connector_id, status=event.status,
            error_code=event.error_code, time_ms=time_ms,
            event_time_ms=event.event_time_ms, receive_time_ms=event.receive_time_ms)
