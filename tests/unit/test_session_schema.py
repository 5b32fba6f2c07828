"""ChargingSession v2 (the cost breakdown CDRs are built from) and the v1 it must still read."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from decimal import Decimal
from io import BytesIO

import pytest
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import SCHEMA_DIR, default_catalog
from schemas.codec import Codec
from schemas.errors import DecodeError, EncodeError
from schemas.records import ChargingSession, DimensionCost, SessionPeriod, SessionState
from tests.unit.test_avro_writer import canonical

pytestmark = pytest.mark.unit

CODEC = Codec()
CATALOG = default_catalog()
AMOUNTS = st.decimals(min_value=-10**9, max_value=10**9, places=4, allow_nan=False,
                      allow_infinity=False)


def session(**changes: object) -> ChargingSession:
    base = ChargingSession(
        session_id="LS-2024-01-01-001", version=2, state=SessionState.COMPLETED,
        station_id="CP-1", connector_id=1, transaction_id="tx-1", id_tag="TAG", vehicle_id=None,
        start_ms=1_700_000_000_000, end_ms=1_700_003_600_000, meter_start_wh=1000.0,
        meter_end_wh=21000.0, energy_wh=20000.0, soc_start_pct=20.0, soc_end_pct=80.0,
        max_power_w=11000.0, avg_power_w=10000.0, charging_ms=3_000_000, plugged_ms=3_600_000,
        cost=Decimal("7.35"), currency="EUR", event_count=14, stop_reason="EVDisconnected",
        flags=("late_event",), cost_excl_vat=Decimal("6.18"), tariff_id="DAY",
        periods=(SessionPeriod(1_700_000_000_000, 20000.0, 3_000_000, 0, 0, 1, -1),
                 SessionPeriod(1_700_003_000_000, 0.0, 0, 600_000, -1, -1, 2)),
        dimension_costs=(DimensionCost("ENERGY", Decimal("5.00"), Decimal("5.95")),
                         DimensionCost("PARKING_TIME", Decimal("1.18"), Decimal("1.40"))))
    return replace(base, **changes)


def write_with(path: str, datum: dict) -> bytes:
    """A single-object message written with the schema file at `path`, without Codec."""
    schema = json.loads((SCHEMA_DIR / path).read_text())
    canonical = to_parsing_canonical_form(schema)
    buf = BytesIO()
    buf.write(b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")))
    schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def test_versions_kept_and_v1_is_todays_fields_without_the_breakdown() -> None:
    v1, v2 = CATALOG.versions("ChargingSession")
    assert (v1.version, v2.version) == (1, 2) and CATALOG.current("ChargingSession") is v2
    old = [f["name"] for f in json.loads(v1.text)["fields"]]
    new = [f["name"] for f in json.loads(v2.text)["fields"]]
    assert new == old + ["cost_excl_vat", "tariff_id", "periods", "dimension_costs"]
    assert [f.name for f in fields(SessionPeriod)] == [
        f["name"] for f in json.loads(v2.text)["fields"][-2]["type"]["items"]["fields"]]


def test_a_v1_session_decodes_with_todays_reader() -> None:
    old = session(cost_excl_vat=None, tariff_id=None, periods=(), dimension_costs=())
    datum = {f.name: getattr(old, f.name) for f in fields(ChargingSession)
             if f.name not in ("cost_excl_vat", "tariff_id", "periods", "dimension_costs")}
    datum.update(state="completed", flags=list(old.flags), cost=Decimal("7.3500"))
    data = write_with("versions/charging_session.v1.avsc", datum)
    assert data[2:10] == CATALOG.versions("ChargingSession")[0].fingerprint
    decoded = CODEC.decode_session(data)
    assert decoded == old and decoded.cost_excl_vat is None and decoded.periods == ()


@settings(max_examples=100, deadline=None)
@given(excl=st.none() | AMOUNTS, tariff=st.none() | st.text(max_size=8),
       periods=st.lists(st.builds(SessionPeriod, st.integers(0, 2**62),
                                  st.floats(allow_nan=False, allow_infinity=False),
                                  st.integers(0, 2**62), st.integers(0, 2**62),
                                  st.integers(-1, 99), st.integers(-1, 99),
                                  st.integers(-1, 99)), max_size=5).map(tuple),
       costs=st.lists(st.builds(DimensionCost, st.sampled_from(["ENERGY", "TIME", "FLAT"]),
                                AMOUNTS, AMOUNTS), max_size=4).map(tuple))
def test_breakdown_round_trips(excl: Decimal | None, tariff: str | None,
                               periods: tuple[SessionPeriod, ...],
                               costs: tuple[DimensionCost, ...]) -> None:
    original = session(cost_excl_vat=excl, tariff_id=tariff, periods=periods,
                       dimension_costs=costs)
    data = CODEC.encode_session(original, "t")
    assert CODEC.decode_session(data) == original
    assert data == canonical(data)  # the generated writer's bytes are fastavro's


def test_bad_breakdown_is_refused_by_name() -> None:
    with pytest.raises(EncodeError, match=r"cost_excl_vat 1E\+15 does not fit"):
        CODEC.encode_session(session(cost_excl_vat=Decimal("1e15")), "t")
    with pytest.raises(EncodeError, match="ENERGY incl_vat"):
        CODEC.encode_session(session(dimension_costs=(
            DimensionCost("ENERGY", Decimal(1), Decimal("Infinity")),)), "t")
    with pytest.raises(EncodeError, match="period's energy_wh is nan"):
        CODEC.encode_session(session(periods=(SessionPeriod(0, math.nan, 0, 0),)), "t")


def test_a_non_finite_period_from_the_wire_is_a_decode_error() -> None:
    good = session()
    datum = {f.name: getattr(good, f.name) for f in fields(ChargingSession)}
    datum.update(state="completed", flags=list(good.flags),
                 periods=[{"start_ms": 0, "energy_wh": math.inf, "charging_ms": 0,
                           "parking_ms": 0, "energy_element": -1, "time_element": -1,
                           "parking_element": -1}],
                 dimension_costs=[{"dimension": "ENERGY", "excl_vat": Decimal("1.0000"),
                                   "incl_vat": Decimal("1.1900")}],
                 cost=Decimal("7.3500"), cost_excl_vat=Decimal("6.1800"))
    with pytest.raises(DecodeError, match="period's energy_wh is inf"):
        CODEC.decode_session(write_with("charging_session.avsc", datum))
