"""Anomaly detection: every kind from a constructed session or observation."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charging.anomalies import NETWORK, AnomalyDetector, AnomalyRules, at_least
from charging.rules import MISSING_STOP, Observation
from charging.stations import StationInfo, StationRegistry
from schemas.records import ChargingSession, SessionState, Severity

pytestmark = pytest.mark.unit

T0 = 1_795_400_000_000
REGISTRY = StationRegistry({"CS-1": StationInfo({1: 22_000.0, 2: 50_000.0})})


def session(sid: str = "S-1", *, energy: float = 20_000.0, plugged_ms: int = 3_600_000,
            charging_ms: int | None = None, avg_w: float = 20_000.0, connector: int = 1,
            flags: tuple[str, ...] = (), version: int = 1) -> ChargingSession:
    return ChargingSession(
        session_id=sid, version=version, state=SessionState.COMPLETED, station_id="CS-1",
        connector_id=connector, transaction_id="T", id_tag=None, vehicle_id=None,
        start_ms=T0, end_ms=T0 + plugged_ms, meter_start_wh=1000.0,
        meter_end_wh=1000.0 + energy, energy_wh=energy, soc_start_pct=None, soc_end_pct=None,
        max_power_w=avg_w, avg_power_w=avg_w,
        charging_ms=plugged_ms if charging_ms is None else charging_ms, plugged_ms=plugged_ms,
        cost=Decimal("1.00"), currency="EUR", event_count=10, flags=flags)


def kinds(found: list) -> list[str]:
    return sorted(a.kind for a in found)


def test_a_clean_session_is_no_anomaly() -> None:
    assert AnomalyDetector(registry=REGISTRY).from_completed(session()) == []


def test_zero_energy_session_is_not_also_suspicious() -> None:
    [found] = AnomalyDetector().from_completed(session(energy=0.0, plugged_ms=60_000))
    assert (found.kind, found.severity, found.session_id) == (
        "zero_energy_session", Severity.WARNING, "S-1")
    assert found.detected_ms == T0 + 60_000 and found.connector_id == 1


@pytest.mark.parametrize(("kwargs", "reasons"), [
    ({"energy": 300.0}, "under_min_energy"),
    ({"plugged_ms": 90_000, "avg_w": 20_000.0}, "too_short"),
    ({"avg_w": 25_000.0}, "avg_power_above_rating"),
    ({"energy": 300.0, "plugged_ms": 60_000, "avg_w": 18_000.0}, "under_min_energy,too_short"),
])
def test_suspicious_session_names_its_reasons(kwargs: dict, reasons: str) -> None:
    [found] = AnomalyDetector(registry=REGISTRY).from_completed(session(**kwargs))
    assert found.kind == "suspicious_session" and found.evidence["reasons"] == reasons
    assert found.severity is Severity.WARNING and found.message.startswith("CS-1/1 session S-1")


def test_avg_power_uses_the_registry_and_skips_unknown_connectors() -> None:
    fast = session(avg_w=24_000.0)  # 1.09 x 22 kW: within 110 %
    assert AnomalyDetector(registry=REGISTRY).from_completed(fast) == []
    over = session(avg_w=25_000.0)
    assert AnomalyDetector().from_completed(over) == []  # no registry: no rating
    assert AnomalyDetector(registry=REGISTRY).from_completed(
        replace(over, connector_id=9)) == []
    [found] = AnomalyDetector(registry=REGISTRY).from_completed(over)
    assert found.evidence["rated_w"] == "22000" and found.evidence["ratio"] == "1.14"


def test_thresholds_are_configurable() -> None:
    rules = AnomalyRules(min_energy_wh=50_000.0, min_duration_ms=2 * 3_600_000,
                         over_power_ratio=0.5, blocking_idle_ms=600_000)
    found = AnomalyDetector(rules, REGISTRY).from_completed(session(charging_ms=2_000_000))
    assert kinds(found) == ["connector_blocked", "suspicious_session"]
    suspicious = next(a for a in found if a.kind == "suspicious_session")
    assert suspicious.evidence["reasons"] == "under_min_energy,too_short,avg_power_above_rating"


def test_connector_blocked_after_charging_ended() -> None:
    detector = AnomalyDetector()
    assert detector.from_completed(session(plugged_ms=7_200_000, charging_ms=3_700_000)) == []
    [found] = detector.from_completed(
        session("S-2", plugged_ms=7_200_000, charging_ms=3_000_000))
    assert (found.kind, found.severity) == ("connector_blocked", Severity.INFO)
    assert found.evidence["idle_ms"] == "4200000"


def test_stuck_session_from_missing_stop() -> None:
    [found] = AnomalyDetector().from_completed(
        replace(session(flags=(MISSING_STOP,)), state=SessionState.INCOMPLETE))
    assert (found.kind, found.severity) == ("stuck_session", Severity.WARNING)
    assert found.evidence["state"] == "incomplete"


def test_repeated_failed_starts_once_per_streak_per_connector() -> None:
    detector = AnomalyDetector(AnomalyRules(failed_starts=3))

    def failed(sid: str, connector: int = 1, version: int = 1) -> list[str]:
        return kinds(detector.from_completed(
            session(sid, energy=0.0, connector=connector, version=version)))

    assert failed("A") == failed("B") == ["zero_energy_session"]
    assert failed("X", connector=2) == ["zero_energy_session"]  # another connector
    assert failed("B", version=2) == ["zero_energy_session"]  # a correction counts once
    found = detector.from_completed(session("C", energy=0.0))
    streak = next(a for a in found if a.kind == "repeated_failed_starts")
    assert streak.severity is Severity.CRITICAL and streak.evidence == {
        "count": "3", "session_ids": "A,B,C"}
    assert failed("D") == ["zero_energy_session"]  # not again within the streak
    assert detector.from_completed(session("E")) == []  # a success ends it
    assert failed("F") == failed("G") == ["zero_energy_session"]
    assert "repeated_failed_starts" in failed("H")


@pytest.mark.parametrize(("obs_kind", "values", "kind", "severity"), [
    ("faulted", (("status", "Faulted"), ("error_code", "GroundFailure")),
     "connector_faulted", Severity.CRITICAL),
    ("power_above_rating", (("average_w", "90000"), ("rated_w", "22000")),
     "power_above_rating", Severity.WARNING),
    ("energy_backwards", (("register_wh", "10.0"), ("previous_wh", "5000.0")),
     "energy_backwards", Severity.WARNING),
    ("soc_falling", (("soc_pct", "40.0"), ("previous_pct", "55.0")),
     "soc_falling", Severity.INFO),
    ("clock_skew", (("event_time_ms", "0"), ("receive_time_ms", str(T0))),
     "clock_skew", Severity.INFO),
    ("late_event", (("event_id", "e7"), ("kind", "meter")), "late_event", Severity.INFO),
    ("unusable_held_event", (("event_id", "e9"), ("reason", "stop without an open session")),
     "unusable_event", Severity.WARNING),
])
def test_observations_become_anomalies(obs_kind: str, values: tuple, kind: str,
                                       severity: Severity) -> None:
    obs = Observation(obs_kind, 2, T0 + 5, "S-9", values)
    found = AnomalyDetector().from_observation("CS-1", obs)
    assert found is not None
    assert (found.kind, found.severity, found.station_id, found.connector_id,
            found.session_id, found.detected_ms) == (kind, severity, "CS-1", 2, "S-9", T0 + 5)
    assert found.evidence == dict(values)
    assert found.message.startswith("CS-1/2: ")


def test_faulted_message_names_the_error_code() -> None:
    obs = Observation("faulted", 1, T0, None,
                      (("status", "Faulted"), ("error_code", "GroundFailure")))
    found = AnomalyDetector().from_observation("CS-1", obs)
    assert found is not None and found.session_id is None
    assert found.message == "CS-1/1: connector faulted: GroundFailure (status Faulted)"


def test_unknown_observation_kind_is_ignored() -> None:
    assert AnomalyDetector().from_observation("CS-1", Observation("new_kind", 1, T0, None)) \
        is None


def test_dead_letter_spike() -> None:
    detector = AnomalyDetector(AnomalyRules(dead_letter_spike_per_min=100))
    assert detector.dead_letter_spike(99, 60_000, T0) is None
    assert detector.dead_letter_spike(5, 0, T0) is None
    spike = detector.dead_letter_spike(60, 30_000, T0 + 1)
    assert spike is not None and spike.severity is Severity.CRITICAL
    assert spike.station_id == NETWORK and spike.evidence["per_min"] == "120.0"
    again = detector.dead_letter_spike(70, 30_000, T0 + 2)  # same window: same anomaly
    assert again is not None and again.anomaly_id == spike.anomaly_id


def test_station_silent_escalates_under_one_id() -> None:
    detector = AnomalyDetector(AnomalyRules(silent_ms=600_000, offline_ms=3_600_000))
    assert detector.station_silent("CS-1", T0, T0 + 599_999) is None
    warning = detector.station_silent("CS-1", T0, T0 + 600_000)
    critical = detector.station_silent("CS-1", T0, T0 + 3_600_000)
    assert warning is not None and critical is not None
    assert (warning.severity, critical.severity) == (Severity.WARNING, Severity.CRITICAL)
    assert warning.anomaly_id == critical.anomaly_id and warning.connector_id is None
    assert critical.detected_ms == T0 + 3_600_000


def test_severity_order() -> None:
    assert at_least(Severity.CRITICAL, Severity.WARNING)
    assert at_least(Severity.WARNING, Severity.WARNING)
    assert not at_least(Severity.INFO, Severity.WARNING)


@given(energy=st.floats(0, 1e6), plugged=st.integers(0, 10**8), avg=st.floats(0, 1e6),
       flags=st.sets(st.sampled_from([MISSING_STOP, "late_event", "overlapped"])))
def test_session_anomaly_ids_are_deterministic_and_unique(
        energy: float, plugged: int, avg: float, flags: set[str]) -> None:
    s = session(energy=energy, plugged_ms=plugged, avg_w=avg, charging_ms=plugged // 2,
                flags=tuple(sorted(flags)))
    first = AnomalyDetector(registry=REGISTRY).from_completed(s)
    replay = AnomalyDetector(registry=REGISTRY).from_completed(s)
    assert first == replay
    assert len({a.anomaly_id for a in first}) == len(first)
    corrected = AnomalyDetector(registry=REGISTRY).from_completed(
        replace(s, version=2, end_ms=s.end_ms + 1))
    assert {a.anomaly_id for a in corrected} == {a.anomaly_id for a in first}
