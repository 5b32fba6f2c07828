"""How the stitcher treats messy input: thresholds, the session flags, per-event observations.

Session flags (`ChargingSession.flags`), for on-call and for analysts:

- `missing_start`: no start event; the session opened from its first meter/transaction event.
- `missing_stop`: closed as INCOMPLETE after inactivity (or because another transaction
  took the connector); a stop arriving later corrects it (version + 1, flag replaced).
- `late_stop`: the stop arrived after the session had been closed for inactivity.
- `overlapped`: a new start on the connector closed this still-open session.
- `register_reset`: the energy register went backwards mid-session (reset or rollover);
  energy is counted across it.
- `stop_below_start`: the stop's register is below the session's first reading; it is
  ignored (energy runs to the last plausible reading).
- `stop_below_last`: the stop's register is below the last reading (but not the first); ignored.
- `implausible_reading`: a register value was left out of energy and cost: it implied a power
  above the connector's rating x `power_tolerance` (or `max_plausible_power_w` x it when the
  registry does not know the connector) and the next reading went on from the trajectory
  before it (a kWh slip, a spike), or the register jumped up and went on from there (the
  jump is left out), or a stop implied such a power, or the session closed before a next
  reading could tell a reset from a slip (charging/readings.py).
- `unit_corrected_kwh`: the charger sent kWh in the Wh field; values were multiplied by 1000.
- `unit_corrected_mwh`: values were 1000 times too large for the connector's rating;
  divided by 1000.
- `clock_skew`: an event's charger time was implausible (below); the receive time was used
  to order and time it.
- `late_event`: an event arrived after later events of the session had been applied
  (beyond the reorder window); only order-free aggregates took it (count, peak power, ids).

Duplicates are not flags: `StitchResult.duplicate` counts them.

Charger clocks are judged by plausibility, not by age (charging/charger_clock.py). Chargers
buffer transaction messages while offline and upload them with their original times when
they reconnect, sometimes weeks later, so an old time is no evidence of a wrong clock. A
charger time is skew (receive time is used instead) when it is

- before `clock_epoch_ms` (2010-01-01): a clock reset reads 1970 or a firmware build date;
- ahead of the receive time by more than `skew_ahead_ms`: no charger reports the future;
- out of line with the same charger's own transaction messages: a charger sends those in
  order (OCPP queues them while offline and delivers them in order on reconnect), so their
  times only go forward, from the charger's last known time, however late they arrive. A
  start, reading or stop more than `clock_jump_ms` older than the newest one the charger
  sent before it means the clock jumped back; the receive time is used, and the charger's
  later events stay judged skew while their offset to receive time stays nearer the
  jumped offset than the one it had before (an episode), until its clock is back in line.
  An offline upload passes: its times continue forward from the charger's last known
  time, even when a status sent on reconnect was newer (status notifications are not
  queued, so they are judged but do not move the charger's line).

A charger whose clock was wrong from its first message, behind but after 2010, cannot be
told from one uploading old messages: it keeps its times. The jump threshold is a day by
default because honest late events (a retried reading, a stop delivered after the next
session's start) are hours late at most, and anything older than `late_horizon_ms` could
correct nothing anyway.

Transaction ids are not unique over time (counters reset on firmware updates or factory
resets, 2.0.1 ids get recycled): an event joins the session with its id whose time span
holds it, and a start after every such span opens a new session (observation
`transaction_id_reused`); see `charging.reorder.claim`.
"""

from __future__ import annotations

from dataclasses import dataclass

MISSING_START = "missing_start"
MISSING_STOP = "missing_stop"
LATE_STOP = "late_stop"
OVERLAPPED = "overlapped"
REGISTER_RESET = "register_reset"
STOP_BELOW_START = "stop_below_start"
STOP_BELOW_LAST = "stop_below_last"
UNIT_KWH = "unit_corrected_kwh"
UNIT_MWH = "unit_corrected_mwh"
IMPLAUSIBLE_READING = "implausible_reading"
CLOCK_SKEW = "clock_skew"
LATE_EVENT = "late_event"
TRANSACTION_ID_REUSED = "transaction_id_reused"
"""An observation, not a flag: the new session is complete in itself."""

HOUR_MS = 3_600_000


def check_bounds(rules: object, positive: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """Refuse a rule object with a value its rules cannot work with (a ValueError naming the
    field: the settings report it as an invalid setting)."""
    for name in positive:
        if not getattr(rules, name) > 0:
            raise ValueError(f"{name} must be greater than 0")
    for name in non_negative:
        if not getattr(rules, name) >= 0:
            raise ValueError(f"{name} must be 0 or more")


@dataclass(frozen=True, slots=True)
class StitchRules:
    """Thresholds of the messy-input rules; the defaults keep clean input exactly as is.

    Ordering uses event time (the charger clock) unless it is skewed, then receive time.
    `reorder_window_ms` = 0 applies events without a sequence number in arrival order (no
    lag for running updates); a larger window holds each event until the connector has
    seen an event that much newer, then applies the held events in time order. Events
    with a sequence number are applied at once when they are the next expected one, and
    held across a gap for at most `seq_gap_ms` (or the window, if larger).
    """

    reorder_window_ms: int = 0
    seq_gap_ms: int = 120_000
    max_held: int = 4
    """Held events per connector; on overflow the oldest is applied (bounds state size)."""
    inactivity_ms: int = 6 * HOUR_MS
    """Event time without an event on an open session before it is closed as incomplete."""
    inactivity_wall_ms: int = 6 * HOUR_MS
    """...or wall time: the worker has applied no event of the station for this long (a
    station alone on a quiet partition, whose event time nothing advances). Measured on
    the worker's own clock since it last applied an event of the station, never against
    event or receive times, so a replay of old days is not taken for silence."""
    stuck_after_ms: int = 15 * 60_000
    """An open session with no event for this long (event time or the worker's wall time)
    is reported stuck (`stuck_session`), long before it is closed..."""
    stuck_intervals: float = 5.0
    """...or for this many of its own reporting intervals, if longer (the mean time between
    the session's events: a charger sending a reading every 15 min is stuck after 75 min)."""
    skew_ahead_ms: int = 5 * 60_000
    """Charger time this far ahead of receive time is skew (it cannot be in the future)."""
    clock_epoch_ms: int = 1_262_304_000_000
    """Charger time before this (2010-01-01T00:00Z) is a reset clock, whatever its age."""
    clock_jump_ms: int = 24 * HOUR_MS
    """A transaction event this much older than the charger's newest one: its clock jumped
    back (old times that continue forward, an offline upload, are honest)."""
    late_horizon_ms: int = 24 * HOUR_MS
    """How long (event time) a closed session can still take a late event and be corrected."""
    recent_sessions: int = 2
    """Closed sessions per connector kept for corrections."""
    max_plausible_power_w: float = 400_000.0
    """Rated power assumed for connectors the station registry does not know."""
    power_tolerance: float = 1.5
    """Average power above rating x this is implausible: the reading is left out of energy
    and cost (flag `implausible_reading`), unless the charger's own power reading confirms
    it on a connector the registry knows (then counted, observed as `power_above_rating`:
    the registry's rating is likely wrong). Also the unit check's bound."""
    unit_check_min_ms: int = 30_000
    """Shortest reading interval a unit decision is taken on (register rounding)."""

    def __post_init__(self) -> None:
        check_bounds(self, positive=("max_held", "inactivity_ms", "inactivity_wall_ms",
                                     "recent_sessions", "max_plausible_power_w",
                                     "power_tolerance"),
                     non_negative=("reorder_window_ms", "seq_gap_ms", "skew_ahead_ms",
                                   "clock_epoch_ms", "clock_jump_ms", "late_horizon_ms",
                                   "unit_check_min_ms"))
        check_bounds(self, positive=("stuck_after_ms", "stuck_intervals"), non_negative=())


@dataclass(frozen=True, slots=True)
class Observation:
    """A per-event finding for anomaly detection: what, where, and the values that show it.

    Kinds: `power_above_rating`, `energy_backwards`, `soc_falling`, `faulted`,
    `clock_skew` (`values`: the times and the `rule` that judged it), `late_event`,
    `transaction_id_reused` (a new session took a transaction id an open or recently closed
    session on the connector has), `unusable_held_event` (a held event that turned out
    unusable when the window released it; `values` holds the reason), `implausible_reading`
    (a register value left out of energy; `time_ms` is the reading's), `stuck_session` (an
    open session gone quiet, from `SessionStitcher.stuck`; `time_ms` is its last event's).
    """

    kind: str
    connector_id: int
    time_ms: int
    session_id: str | None
    values: tuple[tuple[str, str], ...] = ()
