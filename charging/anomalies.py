"""Anomaly detection: stitcher observations and completed sessions in, `Anomaly` records out.

Plain Python over plain data (no engine imports), so the Faust agent, a batch run and the
tests share it. Every anomaly ID is deterministic: the kind plus where and when, taken from
event time or the session, so a replay republishes the same IDs and ClickHouse
(`anomalies`, ReplacingMergeTree) keeps one row of each. Per-event observations are
counted into episodes (charging/episodes.py: one anomaly per kind, station, connector and
session, opened, updated, closed; `observe`), and every message is in human units
(charging/units.py). `detected_ms` is event time,
except for `station_silent` and `dead_letter_spike`, which are about wall-clock silence
and rates.

| kind | meaning | severity | what on-call should do |
|---|---|---|---|
| `connector_faulted` | the charger reported `Faulted` or an error code (evidence: `status`, `error_code`) | critical | look the error code up for the charger model; remote-reset the connector, dispatch a technician if it repeats |
| `repeated_failed_starts` | `failed_starts` sessions in a row on one connector delivered no energy | critical | customers cannot charge there: check cable, RFID/authorisation and the charger's log; take the connector out of service if needed |
| `station_silent` | nothing received from the station for `silent_ms` (critical after `offline_ms`) | warning / critical | check the station's connectivity (modem, SIM, gateway logs); open sessions there close as incomplete |
| `dead_letter_spike` | dead letters per minute above `dead_letter_spike_per_min` (station `*`: the whole network) | critical | read `dead_letters` for the stage and error; usually a firmware or schema change at a gateway or a broken producer |
| `zero_energy_session` | a session ended with no energy delivered | warning | check the connector if it repeats (see `repeated_failed_starts`); the customer may call |
| `suspicious_session` | a session with energy under `min_energy_wh`, shorter than `min_duration_ms`, or an average power above `over_power_ratio` x the connector's rating (evidence: `reasons`) | warning | check the session's readings (`chargewatch session ID`); a meter, unit or registry error shows as the same reason on many sessions |
| `stuck_session` | an open session had no event for `StitchRules.stuck_after_ms` (15 min; or `stuck_intervals` x its own mean time between events, if longer) in event time or in the worker's wall time, whatever its partition's traffic; raised once while it is open (evidence: `quiet_ms`, `clock`), and again under the same ID if it then closes as incomplete (flag `missing_stop`, after `inactivity_ms` of event time or `inactivity_wall_ms` of wall time) | warning | check the charger's connection and whether it still sends meter values; if it resumes, nothing to do; if not, the session closes as incomplete and its cost is provisional until a late stop corrects it |
| `power_above_rating` | readings imply an average power above the connector's rating x `StitchRules.power_tolerance`, backed by the charger's own power reading (connectors the station registry knows); the energy is counted | warning | check the station registry's rating for that connector |
| `implausible_reading` | a register value implied a power above the connector's rating x `power_tolerance` (`max_plausible_power_w` when the registry does not know it) and was left out of energy and cost: a kWh value among Wh, a spike, a jump (evidence: `register_wh`, `previous_wh`, `next_wh`; flag `implausible_reading`) | warning | none for the bill (it excludes the value); if it repeats at one station, check the meter and the charger's firmware |
| `energy_backwards` | the energy register went backwards: a reset or rollover that the next reading confirmed (counted across it: flag `register_reset`), or a stop below the last reading (ignored: `stop_below_start` / `stop_below_last`); a drop the next reading does not confirm is an `implausible_reading` instead | warning | check the meter; billing may need review |
| `unusable_event` | a held event could not be used when the reorder window released it (evidence: `reason`) | warning | read the reason; a stop for an unknown transaction often means a lost start |
| `soc_falling` | the vehicle's state of charge fell while charging | info | none unless frequent at one station (then: charger or vehicle BMS reporting) |
| `connector_blocked` | a vehicle stayed plugged in `blocking_idle_ms` after charging ended | info | operations: idle fee or a notice to the driver; not a fault |
| `clock_skew` | a charger's clock is implausible (evidence `rule`: `before_epoch` before 2010, `ahead_of_receive` in the future, `jumped_back` out of line with its own messages); receive time was used; one episode per session (or per idle connector) | info | schedule a time sync (NTP/OCPP) for the charger |
| `late_event` | an event arrived after later events of its session had been applied | info | none; frequent ones point to a buffering gateway or network |
| `transaction_id_reused` | a new session took a transaction id that an open or recently closed session on the connector has (evidence: `transaction_id`, `previous_session_id`); each is its own session | info | none for billing: look sessions up by session ID, not transaction id; many at one station mean its counter was reset (firmware update, factory reset) or its ids are recycled; tell the back office that keys on transaction ids |

A session anomaly is detected at the session's end (`detected_ms` = `end_ms`), and its ID
uses the session ID, so a corrected version of the session (version + 1) republishes the
same anomaly rather than a new one. A correction that clears a finding does not retract
the anomaly already published. `stuck_session` raised on a session still open has the
same ID and `detected_ms` (its last event) as the one its incomplete close raises.
"""  # noqa: E501 - the kinds table is pasted into docs/oncall.md as is

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from charging import episodes as ep
from charging.episodes import Episode, EpisodeKey
from charging.rules import HOUR_MS, MISSING_STOP, TRANSACTION_ID_REUSED, Observation, check_bounds
from charging.stations import StationRegistry
from charging.units import duration, energy, power
from schemas.records import Anomaly, ChargingSession, Severity

NETWORK = "*"
"""`station_id` of anomalies about the whole network (dead-letter spikes)."""

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def at_least(severity: Severity, minimum: Severity) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


@dataclass(frozen=True, slots=True)
class AnomalyRules:
    """Thresholds of the detectors (see the module docstring's table)."""

    min_energy_wh: float = 500.0
    """A session delivering less (but some) energy is suspicious."""
    zero_energy_wh: float = 1.0
    """Below this a session delivered nothing (register resolution): zero-energy, failed start."""
    min_duration_ms: int = 120_000
    """A session plugged in for less is suspicious."""
    over_power_ratio: float = 1.1
    """Average power above the connector's rating x this is suspicious (registry rating)."""
    blocking_idle_ms: int = 3_600_000
    """Plugged in without charging for this long blocks the connector."""
    failed_starts: int = 3
    """Zero-energy sessions in a row on one connector that make `repeated_failed_starts`."""
    dead_letter_spike_per_min: float = 100.0
    """Dead letters per minute above this make a `dead_letter_spike`."""
    silent_ms: int = 30 * 60_000
    """No event from a station for this long (wall clock): `station_silent`, warning."""
    offline_ms: int = 4 * 3_600_000
    """...for this long: critical."""
    episode_update_ms: int = HOUR_MS
    """An open episode publishes its count and worst value at most this often (event time)."""
    episode_quiet_ms: int = HOUR_MS
    """An episode with no occurrence for this long (event time, or wall time since the
    station was last heard) is closed."""
    episode_keep_ms: int = 24 * HOUR_MS
    """A closed episode of a session is kept this long (event time) for a late occurrence,
    which reopens it under the same ID."""

    def __post_init__(self) -> None:
        check_bounds(self, positive=("over_power_ratio", "failed_starts",
                                     "dead_letter_spike_per_min", "silent_ms", "offline_ms",
                                     "episode_update_ms", "episode_quiet_ms"),
                     non_negative=("min_energy_wh", "zero_energy_wh", "min_duration_ms",
                                   "blocking_idle_ms", "episode_keep_ms"))


_FROM_OBSERVATION: dict[str, tuple[str, Severity]] = {
    "faulted": ("connector_faulted", Severity.CRITICAL),
    "power_above_rating": ("power_above_rating", Severity.WARNING),
    "energy_backwards": ("energy_backwards", Severity.WARNING),
    "implausible_reading": ("implausible_reading", Severity.WARNING),
    "stuck_session": ("stuck_session", Severity.WARNING),
    "unusable_held_event": ("unusable_event", Severity.WARNING),
    "soc_falling": ("soc_falling", Severity.INFO),
    "clock_skew": ("clock_skew", Severity.INFO),
    "late_event": ("late_event", Severity.INFO),
    TRANSACTION_ID_REUSED: (TRANSACTION_ID_REUSED, Severity.INFO),
}
"""Observation kind -> (anomaly kind, severity); `_describe` words each."""
_ONCE_PER_SESSION = frozenset({"stuck_session"})
"""Kinds whose ID names the session only and that are not counted as episodes: the timer
reports the open session once (`open`), its incomplete close (`from_completed`) replaces
that record (`closed`)."""


def anomaly_id(kind: str, station_id: str, connector_id: int | None, key: str | int) -> str:
    """Deterministic: the same finding on a replay gets the same ID."""
    return f"{kind}:{station_id}:{'-' if connector_id is None else connector_id}:{key}"


def _where(station_id: str, connector_id: int | None) -> str:
    return station_id if connector_id is None else f"{station_id}/{connector_id}"


@dataclass(slots=True)
class _Streak:
    """Zero-energy sessions in a row on one connector (IDs of the latest `failed_starts`)."""

    count: int = 0
    session_ids: list[str] = field(default_factory=list)


class AnomalyDetector:
    """Turns observations, completed sessions and rates into anomalies.

    Only `repeated_failed_starts` keeps state: a small streak per connector that is in one
    (a success drops it), in the worker's memory. After a restart or a rebalance the streak
    starts again from zero, so the anomaly can come late by up to `failed_starts - 1`
    sessions; it is approximate by design rather than stored in the changelog. Corrected
    versions (version > 1) do not count again.
    """

    def __init__(self, rules: AnomalyRules | None = None,
                 registry: StationRegistry | None = None) -> None:
        self.rules = rules or AnomalyRules()
        self.registry = registry
        self._streaks: dict[tuple[str, int], _Streak] = {}

    # -- per-event observations ----------------------------------------------------------

    def from_observation(self, station_id: str, obs: Observation) -> Anomaly | None:
        """The anomaly of one stitcher observation on its own (None for kinds it does not
        know); `observe` counts it into an episode instead."""
        known = _FROM_OBSERVATION.get(obs.kind)
        if known is None:
            return None
        kind, severity = known
        key = obs.session_id if obs.kind in _ONCE_PER_SESSION and obs.session_id else \
            f"{obs.session_id or '-'}:{obs.time_ms}"
        return Anomaly(
            anomaly_id=anomaly_id(kind, station_id, obs.connector_id, key),
            kind=kind, severity=severity, station_id=station_id,
            connector_id=obs.connector_id, session_id=obs.session_id, detected_ms=obs.time_ms,
            message=f"{_where(station_id, obs.connector_id)}: {_describe(obs.kind, obs.values)}",
            evidence=dict(obs.values),
            status=ep.OPEN if obs.kind in _ONCE_PER_SESSION else ep.SINGLE)

    def observe(self, episodes: dict[EpisodeKey, Episode], station_id: str,
                obs: Observation) -> Anomaly | None:
        """Count one observation into its episode (`episodes`: the station state's); the
        record to publish now, if any (charging/episodes.py)."""
        if obs.kind not in _FROM_OBSERVATION or obs.kind in _ONCE_PER_SESSION:
            return self.from_observation(station_id, obs)
        episode, status = ep.occur(episodes, obs, _magnitude(obs.kind, obs.values),
                                   self.rules.episode_update_ms)
        return None if status is None else _episode_record(station_id, episode, status)

    def close_session(self, episodes: dict[EpisodeKey, Episode], session: ChargingSession
                      ) -> list[Anomaly]:
        """The closing records of the episodes of a session that closed."""
        return [_episode_record(session.station_id, e, ep.CLOSED)
                for e in ep.close_session(episodes, session.session_id, session.end_ms)]

    def close_quiet(self, episodes: dict[EpisodeKey, Episode], station_id: str,
                    now_ms: int, wall_quiet_ms: int = 0) -> list[Anomaly]:
        """The closing records of the station's episodes that went quiet (event time
        `now_ms`, or `wall_quiet_ms` since the worker last heard the station)."""
        if not episodes:
            return []
        rules = self.rules
        return [_episode_record(station_id, e, ep.CLOSED)
                for e in ep.close_quiet(episodes, now_ms, wall_quiet_ms,
                                        rules.episode_quiet_ms, rules.episode_keep_ms)]

    # -- completed sessions --------------------------------------------------------------

    def from_completed(self, session: ChargingSession) -> list[Anomaly]:
        """Every finding on one closed session (and a failed-starts streak it completes)."""
        found: list[Anomaly] = []
        s, rules = session, self.rules
        zero = s.energy_wh < rules.zero_energy_wh
        if zero:
            found.append(self._session(s, "zero_energy_session", Severity.WARNING,
                                       f"no energy delivered in {duration(s.plugged_ms)}", {}))
        else:
            found.extend(self._suspicious(s))
        if s.idle_ms > rules.blocking_idle_ms:
            found.append(self._session(
                s, "connector_blocked", Severity.INFO,
                f"plugged in {duration(s.idle_ms)} without charging",
                {"idle_ms": str(s.idle_ms), "threshold_ms": str(rules.blocking_idle_ms)}))
        if MISSING_STOP in s.flags:
            found.append(self._session(
                s, "stuck_session", Severity.WARNING,
                "closed without a stop event (incomplete)",
                {"state": str(s.state), "last_event_ms": str(s.end_ms),
                 "flags": ",".join(s.flags)}, status=ep.CLOSED))
        streak = self._failed_start(s, zero)
        if streak is not None:
            found.append(streak)
        return found

    def stuck_resumed(self, s: ChargingSession) -> Anomaly:
        """Closes the `stuck_session` reported on a session that then went on and closed
        with its stop (the caller knows it was reported)."""
        return self._session(s, "stuck_session", Severity.WARNING,
                             "events came again after a quiet spell; closed with its stop",
                             {"state": str(s.state), "last_event_ms": str(s.end_ms)},
                             status=ep.CLOSED)

    def _suspicious(self, s: ChargingSession) -> list[Anomaly]:
        rules = self.rules
        reasons: list[str] = []
        evidence = {"energy_wh": f"{s.energy_wh:.0f}", "plugged_ms": str(s.plugged_ms)}
        if s.energy_wh < rules.min_energy_wh:
            reasons.append("under_min_energy")
            evidence["min_energy_wh"] = f"{rules.min_energy_wh:.0f}"
        if s.plugged_ms < rules.min_duration_ms:
            reasons.append("too_short")
            evidence["min_duration_ms"] = str(rules.min_duration_ms)
        rated = (self.registry.rated_power_w(s.station_id, s.connector_id)
                 if self.registry is not None else None)
        if rated is not None and s.avg_power_w > rated * rules.over_power_ratio:
            reasons.append("avg_power_above_rating")
            evidence |= {"avg_power_w": f"{s.avg_power_w:.0f}", "rated_w": f"{rated:.0f}",
                         "ratio": f"{s.avg_power_w / rated:.2f}"}
        if not reasons:
            return []
        evidence["reasons"] = ",".join(reasons)
        return [self._session(s, "suspicious_session", Severity.WARNING,
                              f"suspicious: {', '.join(reasons)} ({energy(s.energy_wh)} in "
                              f"{duration(s.plugged_ms)})", evidence)]

    def _failed_start(self, s: ChargingSession, zero: bool) -> Anomaly | None:
        if s.version > 1:
            return None  # a correction of a session already counted
        key = (s.station_id, s.connector_id)
        if not zero:
            self._streaks.pop(key, None)
            return None
        streak = self._streaks.setdefault(key, _Streak())
        streak.count += 1
        streak.session_ids = [*streak.session_ids, s.session_id][-self.rules.failed_starts:]
        if streak.count != self.rules.failed_starts:
            return None  # once per streak: at the threshold, not on every later failure
        return Anomaly(
            anomaly_id=anomaly_id("repeated_failed_starts", s.station_id, s.connector_id,
                                  s.session_id),
            kind="repeated_failed_starts", severity=Severity.CRITICAL,
            station_id=s.station_id, connector_id=s.connector_id, session_id=s.session_id,
            detected_ms=s.end_ms,
            message=f"{_where(s.station_id, s.connector_id)}: {streak.count} sessions in a "
                    "row delivered no energy",
            evidence={"count": str(streak.count), "session_ids": ",".join(streak.session_ids)})

    @staticmethod
    def _session(s: ChargingSession, kind: str, severity: Severity, text: str,
                 evidence: dict[str, str], status: str = ep.SINGLE) -> Anomaly:
        return Anomaly(
            anomaly_id=anomaly_id(kind, s.station_id, s.connector_id, s.session_id),
            kind=kind, severity=severity, station_id=s.station_id, connector_id=s.connector_id,
            session_id=s.session_id, detected_ms=s.end_ms,
            message=f"{_where(s.station_id, s.connector_id)} session {s.session_id}: {text}",
            evidence=evidence, status=status)

    # -- rates and silence (wall clock) --------------------------------------------------

    def dead_letter_spike(self, count: int, window_ms: int, now_ms: int) -> Anomaly | None:
        """`count` dead letters in the last `window_ms`: an anomaly when the rate is too high.

        The ID names the window the check falls in, so checks repeated within one window
        publish one anomaly.
        """
        if window_ms <= 0:
            return None
        per_min = count * 60_000 / window_ms
        if per_min < self.rules.dead_letter_spike_per_min:
            return None
        return Anomaly(
            anomaly_id=anomaly_id("dead_letter_spike", NETWORK, None,
                                  now_ms // window_ms * window_ms),
            kind="dead_letter_spike", severity=Severity.CRITICAL, station_id=NETWORK,
            connector_id=None, session_id=None, detected_ms=now_ms,
            message=f"dead letters spiking: {per_min:.0f}/min ({count} in "
                    f"{duration(window_ms)})",
            evidence={"count": str(count), "window_ms": str(window_ms),
                      "per_min": f"{per_min:.1f}",
                      "threshold_per_min": f"{self.rules.dead_letter_spike_per_min:g}"})

    def station_silent(self, station_id: str, last_receive_ms: int,
                       now_wall_ms: int) -> Anomaly | None:
        """A station silent for `silent_ms` (warning) or `offline_ms` (critical), else None.

        The ID names the last receive time: one silence is one anomaly, and its escalation
        to critical replaces the warning row in ClickHouse.
        """
        silent = now_wall_ms - last_receive_ms
        if silent < self.rules.silent_ms:
            return None
        severity = Severity.CRITICAL if silent >= self.rules.offline_ms else Severity.WARNING
        return Anomaly(
            anomaly_id=anomaly_id("station_silent", station_id, None, last_receive_ms),
            kind="station_silent", severity=severity, station_id=station_id,
            connector_id=None, session_id=None, detected_ms=now_wall_ms,
            message=f"{station_id}: nothing received for {duration(silent)}"
                    + (" (offline)" if severity is Severity.CRITICAL else ""),
            evidence={"last_receive_ms": str(last_receive_ms), "silent_ms": str(silent)})


def _episode_record(station_id: str, e: Episode, status: str) -> Anomaly:
    """One published state of an episode: its worst occurrence in words, and its count."""
    kind, severity = _FROM_OBSERVATION[e.kind]
    key = e.session_id if e.session_id is not None else f"-:{e.first_ms}"
    text = _describe(e.kind, e.evidence)
    if e.count > 1:
        text += f" ({e.count} times over {duration(e.last_ms - e.first_ms)})"
    at = {ep.OPEN: e.first_ms, ep.UPDATE: e.last_ms}.get(status, e.closed_ms or e.last_ms)
    return Anomaly(
        anomaly_id=anomaly_id(kind, station_id, e.connector_id, key), kind=kind,
        severity=severity, station_id=station_id, connector_id=e.connector_id,
        session_id=e.session_id, detected_ms=at,
        message=f"{_where(station_id, e.connector_id)}: {text}", evidence=dict(e.evidence),
        status=status, occurrences=e.count, first_ms=e.first_ms, last_ms=e.last_ms)


def _magnitude(kind: str, values: tuple[tuple[str, str], ...]) -> float:
    """How bad one occurrence is, to keep an episode's worst (0: the first is kept)."""
    v = dict(values)
    try:
        if kind == "clock_skew":
            return abs(int(v["receive_time_ms"]) - int(v["event_time_ms"]))
        if kind in ("power_above_rating", "implausible_reading"):
            return float(v.get("average_w", 0))
        if kind == "energy_backwards":
            return float(v["previous_wh"]) - float(v["register_wh"])
        if kind == "soc_falling":
            return float(v["previous_pct"]) - float(v["soc_pct"])
    except (KeyError, ValueError):
        pass
    return 0.0


def _describe(kind: str, values: tuple[tuple[str, str], ...]) -> str:
    """One occurrence in words and human units (no raw epoch or millisecond values)."""
    v = dict(values)
    try:
        return _DESCRIBE[kind](v)
    except (KeyError, ValueError):
        return kind.replace("_", " ") + "".join(f", {k} {x}" for k, x in values)


def _clock(v: dict[str, str]) -> str:
    event_ms, receive_ms = int(v["event_time_ms"]), int(v["receive_time_ms"])
    offset = receive_ms - event_ms
    side = "behind" if offset >= 0 else "ahead"
    text = f"charger clock {duration(offset)} {side}"
    if v.get("rule") == "before_epoch":
        day = datetime.fromtimestamp(event_ms / 1000, UTC).date().isoformat()
        return f"{text} (reads {day}, before 2010)"
    if v.get("rule") == "jumped_back":
        return f"{text} (jumped back)"
    return text


def _on_rated(v: dict[str, str]) -> str:
    rated = power(float(v["rated_w"]))
    article = "an" if rated.startswith(("8", "11 ", "18 ", "11.", "18.")) else "a"
    return f"{power(float(v['average_w']))} on {article} {rated} connector"


def _implausible(v: dict[str, str]) -> str:
    text = (f"register reading {energy(float(v['register_wh']))} after "
            f"{energy(float(v['previous_wh']))} left out of energy")
    return f"{text}: {_on_rated(v)}" if "average_w" in v else text


_DESCRIBE = {
    "faulted": lambda v: f"connector faulted: {v['error_code']} (status {v['status']})",
    "power_above_rating": lambda v: f"{_on_rated(v)}, backed by the charger's power reading",
    "energy_backwards": lambda v: (f"energy register went back from "
                                   f"{energy(float(v['previous_wh']))} to "
                                   f"{energy(float(v['register_wh']))}"),
    "implausible_reading": _implausible,
    "stuck_session": lambda v: (f"session quiet for {duration(int(v['quiet_ms']))}: "
                                "its stop may be lost"),
    "unusable_held_event": lambda v: f"event {v['event_id']} could not be used: {v['reason']}",
    "soc_falling": lambda v: (f"state of charge fell from {float(v['previous_pct']):.0f} % "
                              f"to {float(v['soc_pct']):.0f} % while charging"),
    "clock_skew": _clock,
    "late_event": lambda v: f"{v['kind']} event {v['event_id']} arrived late",
    TRANSACTION_ID_REUSED: lambda v: (f"transaction id {v['transaction_id']} reused by a new "
                                      f"session (previous: {v['previous_session_id']})"),
}
"""Observation kind -> its words (`_FROM_OBSERVATION` names the same kinds)."""
