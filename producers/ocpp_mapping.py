"""OCPP 1.6-J and 2.0.1 messages to `MeterEvent`s: the gateway's rules as pure functions.

Payloads are the snake_case dicts the `ocpp` library hands to handlers (keys converted,
values as sent). No sockets, no Kafka: the gateway feeds these and publishes the result.

Readings (`sampledValue`):
- Measurands used: Energy.Active.Import.Register (the default when absent) -> `energy_wh`,
  Power.Active.Import -> `power_w`, SoC -> `soc_pct`, Current.Import -> `current_a`,
  Voltage -> `voltage_v`; every other measurand is not part of the contract and ignored.
- Units: Wh/kWh, W/kW, A, V, Percent; absent = the measurand's base unit (OCPP 1.6 says
  "Wh" for every measurand, which only makes sense for energy). 2.0.1's `multiplier`
  scales by 10^multiplier. A unit that does not fit the measurand (energy in "W") is an
  `OcppMessageError`: guessing would bill a wrong amount.
- Location: Outlet (the default) wins over Inlet; Body/Cable/EV are ignored except for SoC.
- Phases: a sample without a phase is the total and wins. With only per-phase samples,
  energy and power are the sum of L1, L2, L3; current is the highest phase (the one that
  limits); voltage the mean of the line-to-neutral phases.
- 1.6 samples in `format` SignedData carry no plain number and are ignored.

Messages:
- 1.6 StartTransaction -> STARTED (register = meterStart, Wh by definition).
- 1.6 MeterValues with a transactionId, 2.0.1 TransactionEvent Updated -> one METER per
  meterValue (each has its own timestamp), in time order. Readings outside a transaction
  (1.6 MeterValues without transactionId, 2.0.1 MeterValuesRequest) are not session data
  and produce no event: the contract has no kind for them.
- 1.6 StopTransaction, 2.0.1 Ended -> ENDED, completed with the meterValue marked
  Transaction.End (else the latest one); 1.6 meterStop is the register. The other values
  of an end message (1.6 transactionData, 2.0.1 TxEnded measurands) are the transaction's
  history, already sent live; re-emitting them would run the register backwards, so they
  are not. Absent stop reason = "Local", as both specs define.
- 2.0.1 Started -> STARTED with the Transaction.Begin value (else the earliest), then the
  remaining values as METER events.
- StatusNotification -> STATUS (1.6 connector 0 = the whole charger; 2.0.1 uses the EVSE id).

Identification: `id_tag` is the 1.6 idTag or the 2.0.1 idToken's value. `vehicle_id` comes
from the conventions chargers really use: a 1.6 idTag "VID:<EVCCID>" (Autocharge), a 2.0.1
idToken of type MacAddress (the EVCCID), or an idToken additionalInfo of type VID, VIN or
EVCCID. The connector of a 2.0.1 transaction is its EVSE id.

Event ids are deterministic (station, transaction, sequence or time, index in message), so
a charger retrying a message produces the same ids.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from producers.errors import ProducerError
from schemas.records import EventKind, MeterEvent

TX_EPOCH_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
"""1.6 transaction ids count seconds from here: int32 lasts until 2088."""
_INT32_MAX = 2**31 - 1
_ENERGY = "Energy.Active.Import.Register"
_MEASURANDS = {
    _ENERGY: ("energy_wh", {"Wh": 1, "kWh": 1000}, "Wh"),
    "Power.Active.Import": ("power_w", {"W": 1, "kW": 1000}, "W"),
    "SoC": ("soc_pct", {"Percent": 1}, "Percent"),
    "Current.Import": ("current_a", {"A": 1}, "A"),
    "Voltage": ("voltage_v", {"V": 1}, "V"),
}
_PHASES = ("L1", "L2", "L3")
_NEUTRAL_PHASES = ("L1-N", "L2-N", "L3-N")
_VEHICLE_INFO_TYPES = {"VID", "VIN", "EVCCID"}


class OcppMessageError(ProducerError, ValueError):
    """A charger's message that cannot become meter events (bad number, unit, time, ...)."""


@dataclass(frozen=True, slots=True)
class Readings:
    energy_wh: float | None = None
    power_w: float | None = None
    soc_pct: float | None = None
    current_a: float | None = None
    voltage_v: float | None = None


def parse_time_ms(value: str) -> int:
    """An OCPP timestamp (ISO-8601, UTC) in epoch ms; a time without offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise OcppMessageError(f"timestamp {value!r} is not ISO-8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_time(epoch_ms: int) -> str:
    """An OCPP timestamp for responses (Heartbeat, BootNotification)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def derive_transaction_id(timestamp_ms: int, taken: Collection[int]) -> int:
    """A 1.6 transaction id: seconds from 2020-01-01 of the start time, the next free one
    if an open transaction of the same charger already has it (two connectors starting in
    the same second). A connector cannot start twice in one second, so ids are unique per
    charger while its clock moves forward, and a retried StartTransaction gets its id back."""
    candidate = max(1, (timestamp_ms - TX_EPOCH_MS) // 1000)
    while candidate in taken:
        candidate += 1
    if candidate > _INT32_MAX:
        raise OcppMessageError(f"start time {timestamp_ms} is beyond the int32 id range")
    return candidate


def _number(raw: Any, scale: int, multiplier: int, what: str) -> float:
    try:
        value = Decimal(raw) if isinstance(raw, str) else Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise OcppMessageError(f"{what}: {raw!r} is not a number") from None
    if not value.is_finite() or isinstance(raw, bool):
        raise OcppMessageError(f"{what}: {raw!r} is not a finite number")
    return float(value.scaleb(multiplier) * scale)


def _sample_value(sample: Mapping[str, Any]) -> tuple[str, float] | None:
    """(field, value in base unit) of one sampledValue, or None when it is not used."""
    measurand = sample.get("measurand") or _ENERGY
    spec = _MEASURANDS.get(measurand)
    if spec is None or sample.get("format") == "SignedData":
        return None
    name, scales, base = spec
    location = sample.get("location") or "Outlet"
    if location not in ("Outlet", "Inlet") and name != "soc_pct":
        return None
    unit_of_measure = sample.get("unit_of_measure") or {}
    unit = sample.get("unit") or unit_of_measure.get("unit") or base
    multiplier = int(unit_of_measure.get("multiplier") or 0)
    scale = scales.get(unit)
    if scale is None:
        raise OcppMessageError(f"{measurand} in unit {unit!r}; expected one of "
                               f"{', '.join(scales)}")
    return name, _number(sample.get("value"), scale, multiplier, measurand)


def readings_of(samples: Iterable[Mapping[str, Any]]) -> Readings:
    """The contract's readings from one meterValue's sampledValues (rules in the module doc)."""
    found: dict[str, dict[tuple[str, str | None], float]] = {}
    for sample in samples:
        used = _sample_value(sample)
        if used is None:
            continue
        name, value = used
        location = sample.get("location") or "Outlet"
        found.setdefault(name, {})[(location, sample.get("phase"))] = value
    values: dict[str, float] = {}
    for name, by_key in found.items():
        preferred = "Outlet" if any(loc == "Outlet" for loc, _ in by_key) else "Inlet"
        if name == "soc_pct":
            values[name] = next(iter(by_key.values()))
            continue
        phases = {phase: v for (loc, phase), v in by_key.items() if loc == preferred}
        combined = _combine(name, phases)
        if combined is not None:
            values[name] = combined
    return Readings(**values)


def _combine(name: str, phases: Mapping[str | None, float]) -> float | None:
    if None in phases:
        return phases[None]
    if name in ("energy_wh", "power_w"):
        parts = [phases[p] for p in _PHASES if p in phases]
        return sum(parts) if parts else None
    if name == "current_a":
        parts = [phases[p] for p in _PHASES if p in phases]
        return max(parts) if parts else None
    parts = [phases[p] for p in _NEUTRAL_PHASES if p in phases]
    return sum(parts) / len(parts) if parts else None


@dataclass(frozen=True, slots=True)
class _Sample:
    time_ms: int
    readings: Readings
    contexts: frozenset[str]


def _samples(meter_values: Sequence[Mapping[str, Any]] | None) -> list[_Sample]:
    out = []
    for meter_value in meter_values or ():
        sampled = meter_value.get("sampled_value") or ()
        out.append(_Sample(parse_time_ms(meter_value.get("timestamp", "")), readings_of(sampled),
                           frozenset(s.get("context") or "Sample.Periodic" for s in sampled)))
    return sorted(out, key=lambda s: s.time_ms)


def _pick(samples: list[_Sample], context: str, last: bool) -> _Sample | None:
    marked = [s for s in samples if context in s.contexts]
    if marked:
        return marked[-1] if last else marked[0]
    if samples:
        return samples[-1] if last else samples[0]
    return None


def _event(station: str, connector: int, kind: EventKind, time_ms: int, receive_ms: int,
           event_id: str, readings: Readings = Readings(), **fields: Any) -> MeterEvent:
    return MeterEvent(
        event_id=event_id, station_id=station, connector_id=connector, kind=kind,
        event_time_ms=time_ms, receive_time_ms=receive_ms, energy_wh=readings.energy_wh,
        power_w=readings.power_w, soc_pct=readings.soc_pct, current_a=readings.current_a,
        voltage_v=readings.voltage_v, **fields)


def vehicle_of_id_tag(id_tag: str | None) -> str | None:
    """The EVCCID of an Autocharge idTag ("VID:<EVCCID>"), else None."""
    if id_tag and id_tag[:4].upper() == "VID:" and len(id_tag) > 4:
        return id_tag[4:]
    return None


def vehicle_of_id_token(token: Mapping[str, Any] | None) -> str | None:
    """A 2.0.1 idToken's vehicle identity: a MacAddress token (EVCCID) or a VID/VIN/EVCCID
    additionalInfo."""
    if not token:
        return None
    for info in token.get("additional_info") or ():
        if str(info.get("type", "")).upper() in _VEHICLE_INFO_TYPES:
            return str(info.get("additional_id_token"))
    if token.get("type") == "MacAddress":
        return str(token.get("id_token"))
    return vehicle_of_id_tag(token.get("id_token"))


# -- OCPP 1.6 ------------------------------------------------------------------------------


def start_transaction_events(station: str, payload: Mapping[str, Any], transaction_id: int,
                             receive_ms: int) -> list[MeterEvent]:
    """StartTransaction.req with the id the gateway answered."""
    connector = int(payload["connector_id"])
    time_ms = parse_time_ms(payload["timestamp"])
    id_tag = payload.get("id_tag")
    tx = str(transaction_id)
    energy = _number(payload["meter_start"], 1, 0, "meterStart")
    return [_event(station, connector, EventKind.STARTED, time_ms, receive_ms,
                   f"{station}:{connector}:{tx}:start", Readings(energy_wh=energy),
                   transaction_id=tx, id_tag=id_tag, vehicle_id=vehicle_of_id_tag(id_tag))]


def meter_values_events(station: str, payload: Mapping[str, Any],
                        receive_ms: int) -> list[MeterEvent]:
    """MeterValues.req: METER events of a transaction, none outside one."""
    tx = payload.get("transaction_id")
    if tx is None:
        return []
    connector = int(payload["connector_id"])
    return [_event(station, connector, EventKind.METER, s.time_ms, receive_ms,
                   f"{station}:{connector}:{tx}:m{s.time_ms}:{i}", s.readings,
                   transaction_id=str(tx))
            for i, s in enumerate(_samples(payload.get("meter_value")))]


def stop_transaction_events(station: str, payload: Mapping[str, Any], connector_id: int,
                            receive_ms: int) -> list[MeterEvent]:
    """StopTransaction.req; the connector is the one the transaction was started on."""
    tx = str(payload["transaction_id"])
    time_ms = parse_time_ms(payload["timestamp"])
    end = _pick(_samples(payload.get("transaction_data")), "Transaction.End", last=True)
    readings = end.readings if end is not None else Readings()
    readings = replace(readings, energy_wh=_number(payload["meter_stop"], 1, 0, "meterStop"))
    id_tag = payload.get("id_tag")
    return [_event(station, connector_id, EventKind.ENDED, time_ms, receive_ms,
                   f"{station}:{connector_id}:{tx}:stop", readings, transaction_id=tx,
                   id_tag=id_tag, vehicle_id=vehicle_of_id_tag(id_tag),
                   stop_reason=payload.get("reason") or "Local")]


def status_event_16(station: str, payload: Mapping[str, Any], receive_ms: int) -> MeterEvent:
    connector = int(payload["connector_id"])
    stamp = payload.get("timestamp")
    time_ms = parse_time_ms(stamp) if stamp else receive_ms
    return _event(station, connector, EventKind.STATUS, time_ms, receive_ms,
                  f"{station}:{connector}:status:{time_ms}", status=str(payload["status"]),
                  error_code=str(payload["error_code"]))


# -- OCPP 2.0.1 ----------------------------------------------------------------------------


def transaction_event_events(station: str, payload: Mapping[str, Any], evse_id: int,
                             receive_ms: int) -> list[MeterEvent]:
    """TransactionEventRequest; `evse_id` is the transaction's EVSE (sent with its first event)."""
    info = payload["transaction_info"]
    tx = str(info["transaction_id"])
    seq = int(payload["seq_no"])
    time_ms = parse_time_ms(payload["timestamp"])
    token = payload.get("id_token")
    ident: dict[str, Any] = {"transaction_id": tx, "seq": seq,
                             "id_tag": token.get("id_token") if token else None,
                             "vehicle_id": vehicle_of_id_token(token)}
    samples = _samples(payload.get("meter_value"))
    event_type = payload["event_type"]
    prefix = f"{station}:{tx}:{seq}"

    def meters(items: Iterable[_Sample], first_index: int) -> list[MeterEvent]:
        return [_event(station, evse_id, EventKind.METER, s.time_ms, receive_ms,
                       f"{prefix}:{first_index + i}", s.readings, **ident)
                for i, s in enumerate(items)]

    if event_type == "Started":
        begin = _pick(samples, "Transaction.Begin", last=False)
        started = _event(station, evse_id, EventKind.STARTED, time_ms, receive_ms, f"{prefix}:0",
                         begin.readings if begin else Readings(), **ident)
        return [started, *meters((s for s in samples if s is not begin), 1)]
    if event_type == "Ended":
        end = _pick(samples, "Transaction.End", last=True)
        return [_event(station, evse_id, EventKind.ENDED, time_ms, receive_ms, f"{prefix}:0",
                       end.readings if end else Readings(),
                       stop_reason=info.get("stopped_reason") or "Local", **ident)]
    if event_type != "Updated":
        raise OcppMessageError(f"unknown TransactionEvent eventType {event_type!r}")
    if samples:
        return meters(samples, 0)
    if ident["id_tag"] is not None or ident["vehicle_id"] is not None:
        return [_event(station, evse_id, EventKind.METER, time_ms, receive_ms, f"{prefix}:0",
                       **ident)]
    return []


def status_event_201(station: str, payload: Mapping[str, Any], receive_ms: int) -> MeterEvent:
    evse = int(payload["evse_id"])
    time_ms = parse_time_ms(payload["timestamp"])
    return _event(station, evse, EventKind.STATUS, time_ms, receive_ms,
                  f"{station}:{evse}:status:{time_ms}", status=str(payload["connector_status"]))
