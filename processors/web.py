"""Open sessions over the processor worker's web server: the live half of a session lookup.

Completed sessions are in ClickHouse; a session still running exists only in the station
state the worker holds. `GET /open-sessions/{id}/` finds one by session ID and
`GET /open-sessions/{transaction id}/?station=S` by the charger's own transaction id;
both answer the running session (state "open", cost so far) as JSON, or 404.

Finding by session ID scans the states this worker holds for the ID's bytes and decodes
only the states that contain them, so it stays a few milliseconds for thousands of
stations. A worker holds only its assigned partitions: with several workers, a session
is found on the worker that owns its station.

No Faust import: the view is registered through the app object it is given, and the
finding itself is plain functions over station-state bytes (tested without a worker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from decimal import Decimal
from typing import Any, Protocol

from charging.state import StationState
from charging.stitcher import SessionStitcher
from schemas.records import ChargingSession


class StateSource(Protocol):
    """What the views read: the worker's station states (processors/agents.py StationStore)."""

    def get(self, station_id: str) -> bytes | None: ...

    def items(self) -> Iterable[tuple[str, bytes]]: ...


def open_by_id(blobs: Iterable[tuple[str, bytes]], stitcher: SessionStitcher,
               session_id: str) -> ChargingSession | None:
    """The open session with this ID among these `(station id, state bytes)`, or None."""
    needle = f'"{session_id}"'.encode()
    for _, blob in blobs:
        if needle not in blob:
            continue
        state = StationState.from_bytes(blob)
        for connector_id, session in state.open_sessions().items():
            if session.session_id == session_id:
                return stitcher.snapshot(state, connector_id)
    return None


def open_by_transaction(blob: bytes | None, stitcher: SessionStitcher,
                        transaction_id: str) -> ChargingSession | None:
    """The open session of this station state whose charger transaction id matches."""
    if blob is None:
        return None
    state = StationState.from_bytes(blob)
    for connector_id, session in state.open_sessions().items():
        if session.transaction_id == transaction_id:
            return stitcher.snapshot(state, connector_id)
    return None


def session_json(session: ChargingSession) -> dict[str, Any]:
    """A session as JSON-ready values: money as a decimal string, times as epoch ms."""
    return {k: (str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(session).items()}


def find_open(store: StateSource, stitcher: SessionStitcher, key: str,
              station: str | None) -> ChargingSession | None:
    """By transaction id when a station is given, else by session ID."""
    if station:
        return open_by_transaction(store.get(station), stitcher, key)
    return open_by_id(list(store.items()), stitcher, key)


def register_views(app: Any, store: StateSource, stitcher: SessionStitcher,
                   topics: Any) -> Callable[..., Any]:
    """Register `GET /open-sessions/{key}/` on the Faust app; returns the view function.

    `topics` is accepted so every agent-side registration takes the same arguments; the
    view reads only the worker's state.
    """
    del topics

    @app.page("/open-sessions/{key}/")
    async def open_session(web: Any, request: Any, key: str) -> Any:
        station = request.query.get("station") or None
        session = find_open(store, stitcher, key, station)
        if session is None:
            return web.json({"error": f"no open session {key!r} on this worker"}, status=404)
        return web.json(session_json(session))

    return open_session
