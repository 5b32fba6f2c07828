"""Charge detail records (OCPI 2.2.1 CDRs): one per billed session version, never edited.

A CDR is built from a completed `ChargingSession` alone: the session carries what the
tariff engine priced (totals excl. and incl. VAT, the tariff, charging periods, cost per
dimension), so no tariff is re-evaluated here and the CDR's `total_cost.incl_vat` is the
session's cost to the cent.

Immutability follows OCPI: a corrected session (a late event publishes version v+1 of the
same session_id) does not change the CDR already issued. It gets a *credit CDR* (credit =
true, credit_reference_id = the old CDR's id, every amount negated, volumes as they were)
and the new version gets a CDR of its own. So the sum of all CDRs of a session, credits
included, is always its latest version's cost. Ids are deterministic, so a replay issues
the same rows: `{session_id}-v{version}` and `{credited id}-credit`; times are taken from
the sessions (never the wall clock) for the same reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from charging.stations import StationInfo
from charging.tariffs.model import DAYS, Tariff, TariffElement
from schemas.records import ChargingSession, SessionPeriod, SessionState

AUTH_METHOD = "WHITELIST"
"""OCPI AuthMethod: chargers authorise id tags locally (OCPP), the pipeline sees no request."""
_VOLUME = Decimal("0.0001")
"""OCPI volumes carry 4 decimals (kWh, hours)."""
_CENT = Decimal("0.01")
_MS_PER_HOUR = Decimal(3_600_000)
_WH_PER_KWH = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Price:
    """OCPI Price. `excl_vat` is None only for sessions published before the session
    schema carried it (v1): their CDRs know the amount incl. VAT only."""

    excl_vat: Decimal | None
    incl_vat: Decimal

    def negated(self) -> Price:
        return Price(None if self.excl_vat is None else -self.excl_vat, -self.incl_vat)


@dataclass(frozen=True, slots=True)
class Cdr:
    """One issued CDR (or credit CDR) of one session version."""

    cdr_id: str
    session_id: str
    session_version: int
    """The session version this CDR bills (a credit: the version it cancels)."""
    issued_version: int
    """The session version whose arrival issued it: orders a session's CDRs."""
    credit: bool
    credit_reference_id: str | None
    station_id: str
    connector_id: int
    id_tag: str | None
    vehicle_id: str | None
    start_ms: int
    end_ms: int
    currency: str
    tariff_id: str | None
    periods: tuple[SessionPeriod, ...]
    total_cost: Price
    total_fixed_cost: Price | None
    total_energy_wh: float
    total_energy_cost: Price | None
    total_time_ms: int
    """Start to end, parking included (OCPI total_time)."""
    total_time_cost: Price | None
    total_parking_ms: int
    total_parking_cost: Price | None
    last_updated_ms: int

    @property
    def issue_order(self) -> tuple[int, int]:
        """Sort key: by issuing version, a credit before the CDR issued with it."""
        return (self.issued_version, 0 if self.credit else 1)


def cdr_id(session_id: str, version: int) -> str:
    return f"{session_id}-v{version}"


def credit_id(credited: str) -> str:
    return f"{credited}-credit"


def build_cdr(session: ChargingSession) -> Cdr:
    """The CDR of one closed session version (raises ValueError for a running session)."""
    if session.state is SessionState.OPEN or session.version < 1:
        raise ValueError(f"session {session.session_id!r} is still open (version "
                         f"{session.version}): only closed sessions are billed")
    costs = {c.dimension: Price(c.excl_vat, c.incl_vat) for c in session.dimension_costs}
    periods = session.periods or (SessionPeriod(
        session.start_ms, session.energy_wh, session.charging_ms, session.idle_ms),)
    return Cdr(
        cdr_id=cdr_id(session.session_id, session.version), session_id=session.session_id,
        session_version=session.version, issued_version=session.version, credit=False,
        credit_reference_id=None, station_id=session.station_id,
        connector_id=session.connector_id, id_tag=session.id_tag,
        vehicle_id=session.vehicle_id, start_ms=session.start_ms, end_ms=session.end_ms,
        currency=session.currency, tariff_id=session.tariff_id, periods=periods,
        total_cost=Price(session.cost_excl_vat, session.cost),
        total_fixed_cost=costs.get("FLAT"), total_energy_wh=session.energy_wh,
        total_energy_cost=costs.get("ENERGY"), total_time_ms=session.plugged_ms,
        total_time_cost=costs.get("TIME"),
        total_parking_ms=sum(p.parking_ms for p in periods),
        total_parking_cost=costs.get("PARKING_TIME"), last_updated_ms=session.end_ms)


def credit_for(cdr: Cdr, issued_version: int, at_ms: int) -> Cdr:
    """The credit CDR cancelling `cdr`: same volumes, every amount negated."""
    if cdr.credit:
        raise ValueError(f"{cdr.cdr_id} is a credit CDR: only a billing CDR is credited")

    def neg(price: Price | None) -> Price | None:
        return None if price is None else price.negated()

    return replace(
        cdr, cdr_id=credit_id(cdr.cdr_id), issued_version=issued_version, credit=True,
        credit_reference_id=cdr.cdr_id, total_cost=cdr.total_cost.negated(),
        total_fixed_cost=neg(cdr.total_fixed_cost), total_energy_cost=neg(cdr.total_energy_cost),
        total_time_cost=neg(cdr.total_time_cost), total_parking_cost=neg(cdr.total_parking_cost),
        last_updated_ms=max(cdr.last_updated_ms, at_ms))


def issue(session: ChargingSession, issued: Sequence[Cdr]) -> tuple[Cdr, ...]:
    """What a newly arrived session version issues, given the session's CDRs so far.

    Nothing when a CDR of this or a newer version exists (a replayed or stale version);
    else a credit for every billing CDR not yet credited (normally the previous
    version's; versions that never arrived, e.g. compacted away, were never billed),
    then this version's CDR. Folding every version through this keeps the sum of the
    session's CDRs equal to its latest version's cost.
    """
    billing = [c for c in issued if not c.credit]
    if any(c.session_version >= session.version for c in billing):
        return ()
    credited = {c.credit_reference_id for c in issued if c.credit}
    credits = tuple(credit_for(c, session.version, session.end_ms)
                    for c in sorted(billing, key=lambda c: c.session_version)
                    if c.cdr_id not in credited)
    return (*credits, build_cdr(session))


# -- OCPI JSON -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """The CPO as OCPI names it (settings `ocpi`); None where not configured."""

    country_code: str | None = None
    party_id: str | None = None


REQUIRED: dict[str, tuple[str, ...]] = {
    "": ("country_code", "party_id", "id", "start_date_time", "end_date_time", "cdr_token",
         "auth_method", "cdr_location", "currency", "charging_periods", "total_cost",
         "total_energy", "total_time", "last_updated"),
    "cdr_token": ("country_code", "party_id", "uid", "type", "contract_id"),
    "cdr_location": ("id", "address", "city", "country", "coordinates", "evse_uid", "evse_id",
                     "connector_id", "connector_standard", "connector_format",
                     "connector_power_type"),
    "tariffs[]": ("country_code", "party_id", "id", "currency", "elements", "last_updated"),
}
"""What OCPI 2.2.1 requires of a CDR and its parts that this network may not know: the
fields `missing` reports (a roaming partner rejects a CDR without them)."""


def to_ocpi(cdr: Cdr, tariff: Tariff | None = None, party: Party | None = None,
            station: StationInfo | None = None) -> dict[str, Any]:
    """The CDR as an OCPI 2.2.1 CDR object; amounts stay Decimal (the caller renders them).

    `party` (settings) gives `country_code`/`party_id` (of the CDR, its tariffs and its
    token: id tags are authorised locally, so the CPO is the token's issuer too), `station`
    (the stations file) the location and the connector's type; what neither knows is left
    out, and `missing` names it. The tariff is the full OCPI Tariff when `tariff` (the one
    with the CDR's tariff id) is given, else a reference by id.
    """
    codes = _codes(party)
    doc: dict[str, Any] = {
        **codes,
        "id": cdr.cdr_id,
        "start_date_time": iso(cdr.start_ms),
        "end_date_time": iso(cdr.end_ms),
        "session_id": cdr.session_id,
        "cdr_token": {**codes, "uid": cdr.id_tag or cdr.vehicle_id or "UNKNOWN",
                      "type": "RFID" if cdr.id_tag else "OTHER",
                      "contract_id": cdr.id_tag or cdr.vehicle_id or "UNKNOWN"},
        "auth_method": AUTH_METHOD,
        "cdr_location": cdr_location(cdr, party, station),
        "currency": cdr.currency,
        "tariffs": [] if cdr.tariff_id is None else [
            ocpi_tariff(tariff, party, cdr.start_ms)
            if tariff is not None and tariff.tariff_id == cdr.tariff_id
            else {**codes, "id": cdr.tariff_id, "currency": cdr.currency}],
        "charging_periods": [_period(p, cdr.tariff_id) for p in cdr.periods],
        "total_cost": _price(cdr.total_cost),
        "total_energy": _volume(Decimal(repr(cdr.total_energy_wh)) / _WH_PER_KWH),
        "total_time": _hours(cdr.total_time_ms),
        "total_parking_time": _hours(cdr.total_parking_ms),
        "credit": cdr.credit,
        "last_updated": iso(cdr.last_updated_ms),
    }
    for key, price in (("total_fixed_cost", cdr.total_fixed_cost),
                       ("total_energy_cost", cdr.total_energy_cost),
                       ("total_time_cost", cdr.total_time_cost),
                       ("total_parking_cost", cdr.total_parking_cost)):
        if price is not None:
            doc[key] = _price(price)
    if cdr.credit_reference_id is not None:
        doc["credit_reference_id"] = cdr.credit_reference_id
    return doc


def cdr_location(cdr: Cdr, party: Party | None, station: StationInfo | None
                 ) -> dict[str, Any]:
    """OCPI CdrLocation: ids from the CDR, the rest from the stations file. `evse_id`
    (eMI3: country*party*E...) is the registry's, else derived from the CPO's codes and
    the station and connector ids (letters and digits only)."""
    socket = station.sockets.get(cdr.connector_id) if station is not None else None
    evse_id = socket.evse_id if socket is not None else None
    if evse_id is None and party is not None and party.country_code and party.party_id:
        outlet = "".join(ch for ch in cdr.station_id.upper() if ch.isalnum())
        evse_id = f"{party.country_code}*{party.party_id}*E{outlet}*{cdr.connector_id}"
    doc: dict[str, Any] = {"id": cdr.station_id}
    if station is not None:
        doc |= {key: value for key, value in (
            ("name", station.name), ("address", station.address), ("city", station.city),
            ("postal_code", station.postal_code), ("country", station.country))
            if value is not None}
        if station.coordinates is not None:
            doc["coordinates"] = {"latitude": station.coordinates[0],
                                  "longitude": station.coordinates[1]}
    doc["evse_uid"] = f"{cdr.station_id}*{cdr.connector_id}"
    if evse_id is not None:
        doc["evse_id"] = evse_id
    doc["connector_id"] = str(cdr.connector_id)
    if socket is not None:
        doc |= {f"connector_{key}": value for key, value in (
            ("standard", socket.standard), ("format", socket.format),
            ("power_type", socket.power_type)) if value is not None}
    return doc


def missing(doc: dict[str, Any]) -> list[str]:
    """The fields OCPI 2.2.1 requires (`REQUIRED`) that an OCPI CDR object lacks, by path:
    `country_code`, `cdr_location.address`, `tariffs[].last_updated`."""
    parts: list[tuple[str, dict[str, Any]]] = [("", doc)]
    for key in ("cdr_token", "cdr_location"):
        parts.append((key, doc.get(key) or {}))
    parts += [("tariffs[]", t) for t in doc.get("tariffs") or ()]
    found: dict[str, None] = {}
    for where, part in parts:
        prefix = f"{where}." if where else ""
        for name in REQUIRED[where]:
            if part.get(name) in (None, ""):
                found[prefix + name] = None
    return list(found)


def ocpi_tariff(tariff: Tariff, party: Party | None = None,
                used_from_ms: int | None = None) -> dict[str, Any]:
    """A tariff of the model as an OCPI 2.2.1 Tariff object (prices stay Decimal).

    `last_updated` is the tariff's (from its file); a tariff not read from a file (the
    simple tariff) shows `used_from_ms`, the session's start: a CDR carries its tariff as
    it was when the session started."""
    doc: dict[str, Any] = {
        **_codes(party), "id": tariff.tariff_id, "currency": tariff.currency,
        "elements": [_element(e) for e in tariff.elements]}
    for key, price in (("min_price", tariff.min_price), ("max_price", tariff.max_price)):
        if price is not None:
            doc[key] = {k: v for k, v in (("excl_vat", price.excl_vat),
                                          ("incl_vat", price.incl_vat)) if v is not None}
    if tariff.start_ms is not None:
        doc["start_date_time"] = iso(tariff.start_ms)
    if tariff.end_ms is not None:
        doc["end_date_time"] = iso(tariff.end_ms)
    updated = tariff.last_updated_ms if tariff.last_updated_ms is not None else used_from_ms
    if updated is not None:
        doc["last_updated"] = iso(updated)
    return doc


def _codes(party: Party | None) -> dict[str, str]:
    if party is None:
        return {}
    return {k: v for k, v in (("country_code", party.country_code),
                              ("party_id", party.party_id)) if v}


def _element(element: TariffElement) -> dict[str, Any]:
    components = []
    for c in element.components:
        component: dict[str, Any] = {"type": str(c.dimension), "price": c.price,
                                     "step_size": c.step_size}
        if c.vat is not None:
            component["vat"] = c.vat
        components.append(component)
    doc: dict[str, Any] = {"price_components": components}
    r = element.restrictions
    if not r.empty:
        restrictions: dict[str, Any] = {
            "start_time": None if r.start_time is None else _clock(r.start_time),
            "end_time": None if r.end_time is None else _clock(r.end_time),
            "start_date": None if r.start_date is None else r.start_date.isoformat(),
            "end_date": None if r.end_date is None else r.end_date.isoformat(),
            "min_kwh": r.min_kwh, "max_kwh": r.max_kwh, "min_current": r.min_current,
            "max_current": r.max_current, "min_power": r.min_power, "max_power": r.max_power,
            "min_duration": r.min_duration, "max_duration": r.max_duration,
            "day_of_week": [DAYS[d] for d in sorted(r.day_of_week)] or None}
        doc["restrictions"] = {k: v for k, v in restrictions.items() if v is not None}
    return doc


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def iso(ms: int) -> str:
    """UTC instant as OCPI DateTime (RFC 3339, `Z`)."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _period(period: SessionPeriod, tariff_id: str | None) -> dict[str, Any]:
    volumes = (("ENERGY", _volume(Decimal(repr(period.energy_wh)) / _WH_PER_KWH)),
               ("TIME", _hours(period.charging_ms)),
               ("PARKING_TIME", _hours(period.parking_ms)))
    dimensions = [{"type": kind, "volume": volume} for kind, volume in volumes if volume]
    doc: dict[str, Any] = {"start_date_time": iso(period.start_ms),
                           "dimensions": dimensions or [{"type": "ENERGY",
                                                         "volume": Decimal(0)}]}
    if tariff_id is not None:
        doc["tariff_id"] = tariff_id
    return doc


def _price(price: Price) -> dict[str, Any]:
    doc: dict[str, Any] = {"incl_vat": money(price.incl_vat)}
    if price.excl_vat is not None:
        doc = {"excl_vat": money(price.excl_vat), **doc}
    return doc


def money(amount: Decimal) -> Decimal:
    """Cents where that is exact (stored amounts carry 4 decimals), else as is."""
    cents = amount.quantize(_CENT)
    return cents if cents == amount else amount


def _hours(ms: int) -> Decimal:
    return _volume(Decimal(ms) / _MS_PER_HOUR)


def _volume(value: Decimal) -> Decimal:
    return value.quantize(_VOLUME, rounding=ROUND_HALF_UP)
