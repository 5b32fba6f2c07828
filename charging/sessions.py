"""Session records: opening a session with its ID, closing it, and building what is published.

Closing remembers the session (bounded by `StitchRules.recent_sessions` and
`late_horizon_ms`) so that a late event can publish a corrected version of it.
"""

from __future__ import annotations

from charging.readings import MAX_GAPS, settle
from charging.rules import StitchRules
from charging.session_ids import IdContext, IdTemplate, utc_date
from charging.state import ClosedSession, ConnectorState, OpenSession, StationState
from charging.tariffs import TariffEngine
from charging.tariffs.cost import to_cents
from schemas.records import (
    ChargingSession,
    DimensionCost,
    EventPosition,
    MeterEvent,
    SessionPeriod,
    SessionState,
)

_MS_PER_HOUR = 3_600_000


class SessionRecords:
    """Opens, closes and builds sessions; holds configuration only."""

    def __init__(self, template: IdTemplate, partitions: int, engine: TariffEngine,
                 rules: StitchRules) -> None:
        self._template = template
        self._daily = template.uses_daily
        self._partitions = partitions
        self._engine = engine
        self._rules = rules

    def open(self, state: StationState, event: MeterEvent, position: EventPosition, start: int,
             flags: tuple[str, ...]) -> OpenSession:
        """A new session from its first event; its ID is fixed by the log (session_ids)."""
        state.seq += 1
        daily = 0
        if self._daily:
            day = utc_date(start).isoformat()
            daily = state.daily[day] = state.daily.get(day, 0) + 1
        session_id = self._template.render(IdContext(
            event.station_id, event.connector_id, start, position, self._partitions,
            state.seq, daily))
        power = event.power_w
        energy = event.energy_wh
        seq = event.seq
        gaps = list(range(max(0, seq - MAX_GAPS), seq)) if seq is not None and flags else []
        return OpenSession(
            session_id=session_id, transaction_id=event.transaction_id, id_tag=event.id_tag,
            vehicle_id=event.vehicle_id, start_ms=start, end_ms=start,
            meter_start_wh=energy, meter_last_wh=energy, reading_ms=start,
            soc_start_pct=event.soc_pct, soc_end_pct=event.soc_pct,
            max_power_w=power if power is not None else 0.0, charging_ms=0, event_count=1,
            meter=self._engine.open(event.station_id, event.connector_id, event.id_tag, start),
            flags=flags, seq_max=seq, gaps=gaps)

    def displace(self, state: StationState, cid: int, conn: ConnectorState,
                 flag: str) -> ChargingSession:
        """Close the connector's open session as INCOMPLETE (no stop came for it)."""
        session = conn.session
        assert session is not None
        conn.session = None
        settle(session)
        return self.close(state, cid, conn, session, SessionState.INCOMPLETE, None,
                           session.end_ms, (flag,))

    def close(self, state: StationState, cid: int, conn: ConnectorState, session: OpenSession,
              final: SessionState, stop_reason: str | None, end_ms: int,
              extra_flags: tuple[str, ...] = ()) -> ChargingSession:
        """Close a session (version 1) and remember it for late events."""
        session.flags += extra_flags
        recent = conn.recent
        recent.append(ClosedSession(session, final, 1, stop_reason, end_ms))
        horizon = conn.newest_ms - self._rules.late_horizon_ms
        keep = [c for c in recent[-self._rules.recent_sessions:] if c.end_ms >= horizon]
        if len(keep) != len(recent):
            conn.recent = keep
        return self.build(state, cid, session, final, 1, stop_reason, end_ms, session.flags)

    def build(self, state: StationState, connector_id: int, session: OpenSession,
              kind: SessionState, version: int, stop_reason: str | None, end_ms: int,
              flags: tuple[str, ...]) -> ChargingSession:
        """The published record: running (OPEN, version 0) or closed, priced to `end_ms`."""
        energy = session.energy_wh
        plugged = end_ms - session.start_ms
        charging = session.charging_ms
        cost = self._engine.quote(session.meter, state.station_id, end_ms)
        meter_start = session.meter_start_wh
        return ChargingSession(
            session_id=session.session_id, version=version, state=kind,
            station_id=state.station_id, connector_id=connector_id,
            transaction_id=session.transaction_id, id_tag=session.id_tag,
            vehicle_id=session.vehicle_id, start_ms=session.start_ms, end_ms=end_ms,
            meter_start_wh=meter_start if meter_start is not None else 0.0,
            meter_end_wh=session.meter_last_wh if session.meter_last_wh is not None else 0.0,
            energy_wh=energy, soc_start_pct=session.soc_start_pct,
            soc_end_pct=session.soc_end_pct, max_power_w=session.max_power_w,
            avg_power_w=energy * _MS_PER_HOUR / charging if charging > 0 else 0.0,
            charging_ms=charging, plugged_ms=plugged,
            cost=cost.incl_vat, currency=cost.currency,
            event_count=session.event_count, stop_reason=stop_reason, flags=flags,
            cost_excl_vat=cost.excl_vat, tariff_id=cost.tariff_id,
            periods=tuple(SessionPeriod(p.start_ms, float(p.energy_wh), p.charging_ms,
                                        p.parking_ms, *p.elements) for p in cost.periods),
            dimension_costs=tuple(
                DimensionCost(str(d), to_cents(excl), to_cents(incl))
                for d, (excl, incl) in sorted(cost.by_dimension().items())))
