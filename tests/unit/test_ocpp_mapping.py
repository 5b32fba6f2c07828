"""OCPP message -> MeterEvent rules, on plain payload dicts (no sockets, no broker)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.ocpp_mapping import (
    TX_EPOCH_MS,
    OcppMessageError,
    Readings,
    derive_transaction_id,
    format_time,
    meter_values_events,
    parse_time_ms,
    readings_of,
    start_transaction_events,
    status_event_16,
    status_event_201,
    stop_transaction_events,
    transaction_event_events,
    vehicle_of_id_tag,
    vehicle_of_id_token,
)
from schemas.records import EventKind, MeterEvent

pytestmark = pytest.mark.unit

T = 1_795_414_800_000
STAMP = "2026-11-23T06:20:00Z"
RX = T + 250


def _at(seconds: int) -> str:
    return format_time(T + seconds * 1000)


def test_times_parse_with_offset_and_naive_as_utc() -> None:
    assert parse_time_ms(STAMP) == T
    assert parse_time_ms("2026-11-23T07:20:00.500+01:00") == T + 500
    assert parse_time_ms("2026-11-23T06:20:00") == T
    assert format_time(T + 7) == "2026-11-23T06:20:00.007Z"
    with pytest.raises(OcppMessageError, match="not ISO-8601"):
        parse_time_ms("yesterday")


def test_default_measurand_is_the_energy_register_in_wh() -> None:
    assert readings_of([{"value": "1234.5"}]) == Readings(energy_wh=1234.5)


def test_units_and_multipliers_convert_to_base_units() -> None:
    assert readings_of([
        {"value": "12.005431", "unit": "kWh"},
        {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "55", "measurand": "SoC", "unit": "Percent", "location": "EV"},
        {"value": "32", "measurand": "Current.Import", "unit": "A"},
        {"value": "400", "measurand": "Voltage"},
    ]) == Readings(energy_wh=12005.431, power_w=7400.0, soc_pct=55.0, current_a=32.0,
                   voltage_v=400.0)
    assert readings_of([{"value": 12.5, "unit_of_measure": {"unit": "Wh", "multiplier": 3}},
                        {"value": 3, "measurand": "Power.Active.Import",
                         "unit_of_measure": {"unit": "kW", "multiplier": -1}}]) == \
        Readings(energy_wh=12500.0, power_w=300.0)


@given(st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False))
def test_kwh_and_wh_readings_agree(kwh: Decimal) -> None:
    wh = kwh * 1000
    assert readings_of([{"value": str(kwh), "unit": "kWh"}]) == \
        readings_of([{"value": str(wh), "unit": "Wh"}]) == Readings(energy_wh=float(wh))


def test_phases_total_wins_else_combined_per_measurand() -> None:
    per_phase = [
        {"value": "100", "phase": "L1"}, {"value": "110", "phase": "L2"},
        {"value": "120", "phase": "L3"},
        {"value": "10", "measurand": "Current.Import", "phase": "L1"},
        {"value": "16", "measurand": "Current.Import", "phase": "L2"},
        {"value": "2", "measurand": "Current.Import", "phase": "N"},
        {"value": "229", "measurand": "Voltage", "phase": "L1-N"},
        {"value": "231", "measurand": "Voltage", "phase": "L2-N"},
        {"value": "400", "measurand": "Voltage", "phase": "L1-L2"},
    ]
    assert readings_of(per_phase) == Readings(energy_wh=330.0, current_a=16.0, voltage_v=230.0)
    assert readings_of([*per_phase, {"value": "333"}]).energy_wh == 333.0


def test_outlet_wins_over_inlet_and_other_locations_are_ignored() -> None:
    assert readings_of([{"value": "90", "location": "Inlet"}, {"value": "80"},
                        {"value": "5", "location": "Body"}]) == Readings(energy_wh=80.0)
    assert readings_of([{"value": "90", "location": "Inlet"}]) == Readings(energy_wh=90.0)
    assert readings_of([{"value": "9", "measurand": "Temperature", "unit": "Celsius"},
                        {"value": "AB12", "format": "SignedData"}]) == Readings()


@pytest.mark.parametrize(("sample", "message"), [
    ({"value": "5", "unit": "W"}, "unit 'W'"),
    ({"value": "5", "measurand": "Power.Active.Import", "unit": "kWh"}, "unit 'kWh'"),
    ({"value": "five"}, "not a number"),
    ({"value": "NaN"}, "not a finite number"),
    ({}, "not a number"),
])
def test_bad_samples_are_errors_not_guesses(sample: dict[str, object], message: str) -> None:
    with pytest.raises(OcppMessageError, match=message):
        readings_of([sample])


def test_transaction_ids_count_seconds_and_skip_taken_ones() -> None:
    expected = (T - TX_EPOCH_MS) // 1000
    assert derive_transaction_id(T, set()) == expected
    assert derive_transaction_id(T + 999, set()) == expected
    assert derive_transaction_id(T, {expected, expected + 1}) == expected + 2
    with pytest.raises(OcppMessageError, match="int32"):
        derive_transaction_id(TX_EPOCH_MS + 2**31 * 1000, set())


@given(st.integers(TX_EPOCH_MS, TX_EPOCH_MS + 10**12), st.sets(st.integers(1, 2**31 - 10)))
def test_a_derived_id_is_never_a_taken_one(start_ms: int, taken: set[int]) -> None:
    tx = derive_transaction_id(start_ms, taken)
    assert tx not in taken and 1 <= tx < 2**31
    assert tx >= (start_ms - TX_EPOCH_MS) // 1000


def test_vehicle_identity_conventions() -> None:
    assert vehicle_of_id_tag("VID:0A1B2C3D4E5F") == "0A1B2C3D4E5F"
    assert vehicle_of_id_tag("RFID-1") is None and vehicle_of_id_tag(None) is None
    assert vehicle_of_id_token({"id_token": "0A1B2C", "type": "MacAddress"}) == "0A1B2C"
    assert vehicle_of_id_token({"id_token": "R1", "type": "ISO14443", "additional_info": [
        {"additional_id_token": "WVW1", "type": "VIN"}]}) == "WVW1"
    assert vehicle_of_id_token({"id_token": "R1", "type": "ISO14443"}) is None


def _event(kind: EventKind, event_id: str, connector: int = 1, time_ms: int = T,
           **fields: object) -> MeterEvent:
    return MeterEvent(event_id=event_id, station_id="CP", connector_id=connector, kind=kind,
                      event_time_ms=time_ms, receive_time_ms=RX, **fields)  # type: ignore[arg-type]


def test_ocpp16_transaction_messages() -> None:
    start = {"connector_id": 2, "id_tag": "VID:AA11", "meter_start": 1500, "timestamp": STAMP}
    assert start_transaction_events("CP", start, 42, RX) == [
        _event(EventKind.STARTED, "CP:2:42:start", 2, transaction_id="42", id_tag="VID:AA11",
               vehicle_id="AA11", energy_wh=1500.0)]
    meters = {"connector_id": 2, "transaction_id": 42, "meter_value": [
        {"timestamp": _at(120), "sampled_value": [{"value": "3.5", "unit": "kWh"}]},
        {"timestamp": _at(60), "sampled_value": [{"value": "2500"}]}]}
    assert meter_values_events("CP", meters, RX) == [
        _event(EventKind.METER, f"CP:2:42:m{T + 60_000}:0", 2, T + 60_000, transaction_id="42",
               energy_wh=2500.0),
        _event(EventKind.METER, f"CP:2:42:m{T + 120_000}:1", 2, T + 120_000,
               transaction_id="42", energy_wh=3500.0)]
    assert meter_values_events("CP", {**meters, "transaction_id": None}, RX) == []
    stop = {"transaction_id": 42, "meter_stop": 9000, "timestamp": _at(600), "transaction_data": [
        {"timestamp": _at(0), "sampled_value": [{"value": "1500", "context": "Transaction.Begin"}]},
        {"timestamp": _at(600), "sampled_value": [
            {"value": "9.1", "unit": "kWh", "context": "Transaction.End"},
            {"value": "77", "measurand": "SoC", "context": "Transaction.End"}]}]}
    assert stop_transaction_events("CP", stop, 2, RX) == [
        _event(EventKind.ENDED, "CP:2:42:stop", 2, T + 600_000, transaction_id="42",
               energy_wh=9000.0, soc_pct=77.0, stop_reason="Local")]


def test_ocpp16_status_defaults_to_receive_time() -> None:
    assert status_event_16("CP", {"connector_id": 0, "status": "Faulted",
                                  "error_code": "GroundFailure"}, RX) == \
        _event(EventKind.STATUS, f"CP:0:status:{RX}", 0, RX, status="Faulted",
               error_code="GroundFailure")


def _tx_event(event_type: str, seq: int, meter_value: list[dict[str, object]] | None = None,
              **extra: object) -> dict[str, object]:
    return {"event_type": event_type, "timestamp": STAMP, "trigger_reason": "Trigger",
            "seq_no": seq, "transaction_info": {"transaction_id": "T1"},
            "meter_value": meter_value, **extra}


def test_ocpp201_started_takes_the_begin_value_and_emits_the_rest() -> None:
    token = {"id_token": "00AA11", "type": "MacAddress"}
    payload = _tx_event("Started", 0, [
        {"timestamp": _at(30), "sampled_value": [{"value": 2100.0}]},
        {"timestamp": _at(0), "sampled_value": [{"value": 2000.0,
                                                 "context": "Transaction.Begin"}]}],
        id_token=token)
    ident = {"transaction_id": "T1", "seq": 0, "id_tag": "00AA11", "vehicle_id": "00AA11"}
    assert transaction_event_events("CP", payload, 3, RX) == [
        _event(EventKind.STARTED, "CP:T1:0:0", 3, energy_wh=2000.0, **ident),
        _event(EventKind.METER, "CP:T1:0:1", 3, T + 30_000, energy_wh=2100.0, **ident)]


def test_ocpp201_updated_and_ended() -> None:
    plain = {"transaction_id": "T1"}
    assert transaction_event_events("CP", _tx_event("Updated", 4), 1, RX) == []
    assert transaction_event_events(
        "CP", _tx_event("Updated", 4, id_token={"id_token": "R9", "type": "ISO14443"}), 1, RX,
    ) == [_event(EventKind.METER, "CP:T1:4:0", seq=4, id_tag="R9", **plain)]
    ended = _tx_event("Ended", 5, [
        {"timestamp": _at(-60), "sampled_value": [{"value": 100.0}]},
        {"timestamp": _at(0), "sampled_value": [{"value": 5.0, "context": "Transaction.End",
                                                 "unit_of_measure": {"unit": "kWh"}}]}])
    assert transaction_event_events("CP", ended, 1, RX) == [
        _event(EventKind.ENDED, "CP:T1:5:0", seq=5, energy_wh=5000.0, stop_reason="Local",
               **plain)]
    with pytest.raises(OcppMessageError, match="eventType"):
        transaction_event_events("CP", _tx_event("Paused", 6), 1, RX)


def test_ocpp201_status_uses_the_evse() -> None:
    assert status_event_201("CP", {"timestamp": STAMP, "connector_status": "Occupied",
                                   "evse_id": 2, "connector_id": 1}, RX) == \
        _event(EventKind.STATUS, f"CP:2:status:{T}", 2, status="Occupied")
