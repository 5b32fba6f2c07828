"""A CDR a roaming partner accepts (issue 16 §6): every field OCPI 2.2.1 requires, with its
type, for a session whose station has a full stations-file entry; and what is missing,
named, when the stations file lacks the station.

The required fields and their types are written here from the OCPI 2.2.1 text (mod_cdrs:
CDR, CdrToken, CdrLocation, ChargingPeriod, CdrDimension; types: Price, DateTime, CiString,
GeoLocation; mod_tariffs: Tariff), not taken from the code under test.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargewatch.cdr_cli import ocpi_json
from charging.cdr import Party, build_cdr, missing, to_ocpi
from charging.stations import StationRegistry
from charging.tariffs import load_tariff_book
from schemas.records import ChargingSession, DimensionCost, SessionPeriod, SessionState

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STATIONS = ROOT / "docs" / "stations.example.yaml"
TARIFFS = ROOT / "tariffs" / "example.yaml"
T0 = 1_632_556_800_000
PARTY = Party("DE", "CWT")

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z?$")
LATITUDE = re.compile(r"^-?[0-9]{1,2}\.[0-9]{5,7}$")
LONGITUDE = re.compile(r"^-?[0-9]{1,3}\.[0-9]{5,7}$")
CONNECTOR_TYPES = {
    "CHADEMO", "CHAOJI", "GBT_AC", "GBT_DC", "IEC_60309_2_single_16",
    "IEC_60309_2_three_16", "IEC_60309_2_three_32", "IEC_60309_2_three_64", "IEC_62196_T1",
    "IEC_62196_T1_COMBO", "IEC_62196_T2", "IEC_62196_T2_COMBO", "IEC_62196_T3A",
    "IEC_62196_T3C", "NEMA_5_20", "NEMA_6_30", "NEMA_6_50", "NEMA_10_30", "NEMA_10_50",
    "NEMA_14_30", "NEMA_14_50", "PANTOGRAPH_BOTTOM_UP", "PANTOGRAPH_TOP_DOWN", "TESLA_R",
    "TESLA_S", *(f"DOMESTIC_{c}" for c in "ABCDEFGHIJKLMNO")}
DIMENSION_TYPES = {"ENERGY", "MAX_CURRENT", "MIN_CURRENT", "MAX_POWER", "MIN_POWER",
                   "PARKING_TIME", "RESERVATION_TIME", "TIME"}


def cistring(n: int) -> Any:
    """CiString(n): printable ASCII, at most n characters."""
    return lambda v: isinstance(v, str) and 0 < len(v) <= n and v.isascii() and v.isprintable()


def string(n: int) -> Any:
    return lambda v: isinstance(v, str) and 0 < len(v) <= n


def one_of(values: set[str]) -> Any:
    return lambda v: v in values


def number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def datetime(v: Any) -> bool:
    return isinstance(v, str) and bool(DATETIME.match(v))


def price(v: Any) -> bool:  # Price: excl_vat 1, incl_vat ?
    return isinstance(v, dict) and number(v.get("excl_vat")) and (
        "incl_vat" not in v or number(v["incl_vat"]))


def geolocation(v: Any) -> bool:
    return isinstance(v, dict) and bool(LATITUDE.match(str(v.get("latitude")))) and bool(
        LONGITUDE.match(str(v.get("longitude"))))


CDR_TOKEN = {"country_code": cistring(2), "party_id": cistring(3), "uid": cistring(36),
             "type": one_of({"AD_HOC_USER", "APP_USER", "OTHER", "RFID"}),
             "contract_id": cistring(36)}
CDR_LOCATION = {
    "id": cistring(36), "address": string(45), "city": string(45), "country": string(3),
    "coordinates": geolocation, "evse_uid": cistring(36), "evse_id": cistring(48),
    "connector_id": cistring(36), "connector_standard": one_of(CONNECTOR_TYPES),
    "connector_format": one_of({"SOCKET", "CABLE"}),
    "connector_power_type": one_of({"AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT",
                                    "AC_3_PHASE", "DC"})}
CHARGING_PERIOD = {"start_date_time": datetime, "dimensions": list}
CDR_DIMENSION = {"type": one_of(DIMENSION_TYPES), "volume": number}
TARIFF = {"country_code": cistring(2), "party_id": cistring(3), "id": cistring(36),
          "currency": string(3), "elements": list, "last_updated": datetime}
CDR = {"country_code": cistring(2), "party_id": cistring(3), "id": cistring(39),
       "start_date_time": datetime, "end_date_time": datetime, "cdr_token": dict,
       "auth_method": one_of({"AUTH_REQUEST", "COMMAND", "WHITELIST"}),
       "cdr_location": dict, "currency": string(3), "charging_periods": list,
       "total_cost": price, "total_energy": number, "total_time": number,
       "last_updated": datetime}


def violations(doc: dict[str, Any], required: dict[str, Any], where: str) -> list[str]:
    """Required fields absent or of the wrong type, by path."""
    out = []
    for name, check in required.items():
        value = doc.get(name)
        ok = isinstance(value, check) if isinstance(check, type) else check(value)
        if value is None or not ok:
            out.append(f"{where}{name}={value!r}")
    return out


def session(station_id: str = "CS-0001", connector_id: int = 2) -> ChargingSession:
    book = load_tariff_book(TARIFFS)
    tariff_id = next(iter(book.tariffs))
    return ChargingSession(
        session_id="EV-000000042", version=1, state=SessionState.COMPLETED,
        station_id=station_id, connector_id=connector_id, transaction_id="tx-1", id_tag="TAG1",
        vehicle_id=None, start_ms=T0, end_ms=T0 + 3_600_000, meter_start_wh=1000.0,
        meter_end_wh=21000.0, energy_wh=20000.0, soc_start_pct=20.0, soc_end_pct=80.0,
        max_power_w=22000.0, avg_power_w=20000.0, charging_ms=3_000_000, plugged_ms=3_600_000,
        cost=Decimal("7.35"), currency="EUR", event_count=14, stop_reason="EVDisconnected",
        cost_excl_vat=Decimal("6.18"), tariff_id=tariff_id,
        periods=(SessionPeriod(T0, 20000.0, 3_000_000, 0, 0, 0, -1),
                 SessionPeriod(T0 + 3_000_000, 0.0, 0, 600_000, 0, -1, 1)),
        dimension_costs=(DimensionCost("ENERGY", Decimal("5.00"), Decimal("5.95")),))


def ocpi(s: ChargingSession, party: Party | None = PARTY) -> dict[str, Any]:
    """The CDR as a partner receives it: through the CLI's JSON rendering."""
    stations = StationRegistry.load(STATIONS).stations
    book = load_tariff_book(TARIFFS)
    cdr = build_cdr(s)
    doc = to_ocpi(cdr, book.tariffs[cdr.tariff_id or ""], party, stations.get(s.station_id))
    return json.loads(ocpi_json(doc), parse_float=Decimal)


@pytest.mark.parametrize(("station", "connector"), [("CS-0001", 1), ("CS-0001", 2),
                                                    ("CS-0002", 1)])
def test_a_cdr_of_a_fully_described_station_has_every_required_field(station: str,
                                                                      connector: int) -> None:
    doc = ocpi(session(station, connector))
    wrong = violations(doc, CDR, "")
    wrong += violations(doc["cdr_token"], CDR_TOKEN, "cdr_token.")
    wrong += violations(doc["cdr_location"], CDR_LOCATION, "cdr_location.")
    assert doc["charging_periods"], "ChargingPeriod is 1..n"
    for i, period in enumerate(doc["charging_periods"]):
        wrong += violations(period, CHARGING_PERIOD, f"charging_periods[{i}].")
        assert period["dimensions"], "CdrDimension is 1..n"
        for d in period["dimensions"]:
            wrong += violations(d, CDR_DIMENSION, f"charging_periods[{i}].dimensions.")
    assert doc["tariffs"]
    for tariff in doc["tariffs"]:
        wrong += violations(tariff, TARIFF, "tariffs.")
    assert not wrong, wrong
    assert missing(doc) == []
    assert (doc["country_code"], doc["party_id"]) == ("DE", "CWT")
    assert doc["cdr_location"]["country"] == "DEU"


def test_the_location_comes_from_the_stations_file() -> None:
    location = ocpi(session("CS-0001", 2))["cdr_location"]
    assert location == {
        "id": "CS-0001", "name": "Market Square", "address": "Marktplatz 1", "city": "Bonn",
        "postal_code": "53111", "country": "DEU",
        "coordinates": {"latitude": "50.735851", "longitude": "7.100660"},
        "evse_uid": "CS-0001*2", "evse_id": "DE*CWT*E0001*2", "connector_id": "2",
        "connector_standard": "IEC_62196_T2", "connector_format": "SOCKET",
        "connector_power_type": "AC_3_PHASE"}
    derived = ocpi(session("CS-0001", 1))["cdr_location"]["evse_id"]
    assert derived == "DE*CWT*ECS0001*1"  # eMI3: letters and digits after the E


def test_what_a_station_missing_from_the_stations_file_lacks_is_named() -> None:
    doc = ocpi(session("CS-9999", 1))
    assert missing(doc) == [f"cdr_location.{f}" for f in (
        "address", "city", "country", "coordinates", "connector_standard",
        "connector_format", "connector_power_type")]
    assert set(missing(doc)) == {f"cdr_location.{v.split('=')[0]}" for v in violations(
        doc["cdr_location"], CDR_LOCATION, "")}
    partial = ocpi(session("CS-0003", 1), party=None)
    assert missing(partial)[:2] == ["country_code", "party_id"]
    assert "cdr_location.evse_id" in missing(partial)  # no codes to derive it from


def test_a_tariff_without_last_updated_in_its_file_takes_the_files_time(
        tmp_path: Path) -> None:
    copy = tmp_path / "tariffs.yaml"
    copy.write_text(TARIFFS.read_text())
    book = load_tariff_book(copy)
    assert {t.last_updated_ms for t in book.tariffs.values()} == {
        int(copy.stat().st_mtime * 1000)}
    tariff = next(iter(book.tariffs.values()))
    stamped = replace(tariff, last_updated_ms=T0)
    cdr = build_cdr(session())
    assert to_ocpi(replace(cdr, tariff_id=tariff.tariff_id), stamped, PARTY)["tariffs"][0][
        "last_updated"] == "2021-09-25T08:00:00.000Z"


def test_the_cpo_codes_are_settings_listed_on_the_settings_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.settings import OcpiSettings, load_settings

    page = (ROOT / "docs" / "settings.md").read_text()
    for name in OcpiSettings.model_fields:
        assert f"| `CHARGEWATCH_OCPI__{name.upper()}` |" in page
    monkeypatch.setenv("CHARGEWATCH_OCPI__COUNTRY_CODE", "NL")
    monkeypatch.setenv("CHARGEWATCH_OCPI__PARTY_ID", "ABC")
    assert (load_settings().ocpi.country_code, load_settings().ocpi.party_id) == ("NL", "ABC")
