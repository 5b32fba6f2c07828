"""Anomaly episodes: one anomaly per condition, not one per event.

A condition that shows on many events (a skewed clock on every message, readings above a
connector's rating, late events) is one episode per (kind, station, connector, session).
Its first occurrence opens it (status `open`); later ones are counted, and update it
(`update`: count, last seen, worst value) at most once per `update_every_ms` of event time;
it is closed (`closed`) when its session closes, or after `quiet_ms` of event time (or of
the worker's wall time since it last heard the station) without an occurrence. A later
occurrence in the same session reopens it under the same ID; one without a session
starts a new episode.

Episodes live in the station's state (changelog-backed, charging/state.py), so a restart
or a replay of the same log publishes the same records. A closed episode of a session is
kept `keep_ms` (event time) for a late event that reopens it, then dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charging.rules import Observation

OPEN = "open"
UPDATE = "update"
CLOSED = "closed"
SINGLE = "single"
"""A finding complete in itself (one record; e.g. a session's findings at its close)."""

EpisodeKey = tuple[str, int, str | None]
"""(kind, connector, session); the station is the state's own."""


@dataclass(slots=True)
class Episode:
    """One open (or recently closed) episode of a station."""

    kind: str
    connector_id: int
    session_id: str | None
    first_ms: int
    """Time of the occurrence that opened it."""
    last_ms: int
    """Newest occurrence time."""
    count: int
    worst: float
    """Magnitude of the worst occurrence (per kind, charging/anomalies.py)."""
    evidence: tuple[tuple[str, str], ...]
    """The worst occurrence's values."""
    reported_ms: int
    """`last_ms` as the latest published record had it (the update rate's clock)."""
    closed_ms: int | None = None
    """When it closed (None: open)."""

    @property
    def key(self) -> EpisodeKey:
        return (self.kind, self.connector_id, self.session_id)

    def pack(self) -> list[Any]:
        return [self.kind, self.connector_id, self.session_id, self.first_ms, self.last_ms,
                self.count, self.worst, [list(pair) for pair in self.evidence],
                self.reported_ms, self.closed_ms]

    @classmethod
    def unpack(cls, row: list[Any]) -> Episode:
        kind, cid, session, first, last, count, worst, evidence, reported, closed = row
        return cls(kind, cid, session, first, last, count, worst,
                   tuple((k, v) for k, v in evidence), reported, closed)


def occur(episodes: dict[EpisodeKey, Episode], obs: Observation, magnitude: float,
          update_every_ms: int) -> tuple[Episode, str | None]:
    """Count one occurrence; the episode and the status to publish (None: nothing now)."""
    key = (obs.kind, obs.connector_id, obs.session_id)
    t = obs.time_ms
    episode = episodes.get(key)
    if episode is None:
        episode = episodes[key] = Episode(obs.kind, obs.connector_id, obs.session_id, t, t,
                                          1, magnitude, obs.values, t)
        return episode, OPEN
    episode.count += 1
    episode.last_ms = max(episode.last_ms, t)
    if magnitude > episode.worst:
        episode.worst, episode.evidence = magnitude, obs.values
    if episode.closed_ms is not None:  # a late occurrence in a closed session's episode
        episode.closed_ms = None
        episode.reported_ms = episode.last_ms
        return episode, OPEN
    if episode.last_ms - episode.reported_ms >= update_every_ms:
        episode.reported_ms = episode.last_ms
        return episode, UPDATE
    return episode, None


def close_session(episodes: dict[EpisodeKey, Episode], session_id: str,
                  end_ms: int) -> list[Episode]:
    """Close the open episodes of a session that closed at `end_ms`."""
    closed = []
    for episode in episodes.values():
        if episode.session_id == session_id and episode.closed_ms is None:
            episode.closed_ms = max(end_ms, episode.last_ms)
            closed.append(episode)
    return closed


def close_quiet(episodes: dict[EpisodeKey, Episode], now_ms: int, wall_quiet_ms: int,
                quiet_ms: int, keep_ms: int) -> list[Episode]:
    """Close the episodes without an occurrence for `quiet_ms` (event time `now_ms`, or
    `wall_quiet_ms` since the station was last heard), dated `quiet_ms` after their last
    occurrence; drop those closed long enough ago (and a sessionless one once closed)."""
    closed = []
    for key, episode in list(episodes.items()):
        if episode.closed_ms is None:
            if now_ms - episode.last_ms < quiet_ms and wall_quiet_ms < quiet_ms:
                continue
            episode.closed_ms = episode.last_ms + quiet_ms
            closed.append(episode)
        if episode.session_id is None or now_ms - episode.closed_ms > keep_ms:
            del episodes[key]
    return closed
