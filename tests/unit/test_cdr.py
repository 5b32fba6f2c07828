"""CDRs: built from sessions, credited on correction, deterministic, summing to the latest cost."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargewatch.cdr_cli import ocpi_json
from charging.cdr import (
    Cdr,
    Price,
    build_cdr,
    credit_for,
    issue,
    ocpi_tariff,
    to_ocpi,
)
from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.stitcher import SessionStitcher, StitcherConfig
from charging.tariffs import load_tariff_book, parse_tariff_book
from schemas.records import (
    ChargingSession,
    DimensionCost,
    EventKind,
    EventPosition,
    MeterEvent,
    SessionPeriod,
    SessionState,
)

pytestmark = pytest.mark.unit

T0 = 1_632_556_800_000
MIN = 60_000
CENTS = st.integers(0, 10_000_000).map(lambda c: Decimal(c) / 100)
DIMENSIONS = ("ENERGY", "FLAT", "PARKING_TIME", "TIME")
EXAMPLE = Path(__file__).resolve().parents[2] / "tariffs" / "example.yaml"


def session(version: int = 1, cost: Decimal = Decimal("7.35"),
            **changes: object) -> ChargingSession:
    base = ChargingSession(
        session_id="LS-2024-01-01-001", version=version, state=SessionState.COMPLETED,
        station_id="CP-1", connector_id=2, transaction_id="tx-1", id_tag="TAG", vehicle_id=None,
        start_ms=T0, end_ms=T0 + 60 * MIN, meter_start_wh=1000.0, meter_end_wh=21000.0,
        energy_wh=20000.0, soc_start_pct=20.0, soc_end_pct=80.0, max_power_w=11000.0,
        avg_power_w=24000.0, charging_ms=50 * MIN, plugged_ms=60 * MIN, cost=cost,
        currency="EUR", event_count=14, stop_reason="EVDisconnected",
        cost_excl_vat=(cost / Decimal("1.19")).quantize(Decimal("0.01")), tariff_id="T-1",
        periods=(SessionPeriod(T0, 20000.0, 50 * MIN, 0, 0, 0, -1),
                 SessionPeriod(T0 + 50 * MIN, 0.0, 0, 10 * MIN, 0, -1, 1)),
        dimension_costs=(DimensionCost("ENERGY", Decimal("5.00"), Decimal("5.95")),
                         DimensionCost("PARKING_TIME", Decimal("1.18"), Decimal("1.40"))))
    return replace(base, **changes)


def test_cdr_of_a_session_carries_its_totals_to_the_cent() -> None:
    cdr = build_cdr(session())
    assert cdr.cdr_id == "LS-2024-01-01-001-v1" and not cdr.credit
    assert cdr.total_cost == Price(Decimal("6.18"), Decimal("7.35"))
    assert cdr.total_energy_cost == Price(Decimal("5.00"), Decimal("5.95"))
    assert cdr.total_parking_cost == Price(Decimal("1.18"), Decimal("1.40"))
    assert cdr.total_time_cost is None and cdr.total_fixed_cost is None
    assert (cdr.total_time_ms, cdr.total_parking_ms) == (60 * MIN, 10 * MIN)
    doc = to_ocpi(cdr)
    assert doc["total_cost"] == {"excl_vat": Decimal("6.18"), "incl_vat": Decimal("7.35")}
    assert (doc["total_energy"], doc["total_time"], doc["total_parking_time"]) == (
        Decimal("20.0000"), Decimal("1.0000"), Decimal("0.1667"))
    assert doc["start_date_time"] == "2021-09-25T08:00:00.000Z"
    assert doc["charging_periods"] == [
        {"start_date_time": "2021-09-25T08:00:00.000Z", "tariff_id": "T-1",
         "dimensions": [{"type": "ENERGY", "volume": Decimal("20.0000")},
                        {"type": "TIME", "volume": Decimal("0.8333")}]},
        {"start_date_time": "2021-09-25T08:50:00.000Z", "tariff_id": "T-1",
         "dimensions": [{"type": "PARKING_TIME", "volume": Decimal("0.1667")}]}]
    assert doc["tariffs"] == [{"id": "T-1", "currency": "EUR"}]
    assert doc["cdr_token"]["uid"] == "TAG" and "credit_reference_id" not in doc
    assert "total_time_cost" not in doc and doc["credit"] is False


def test_open_session_is_not_billed() -> None:
    with pytest.raises(ValueError, match="still open"):
        build_cdr(session(version=0, state=SessionState.OPEN))


def test_free_session_gets_one_period_and_an_old_record_no_excl_vat() -> None:
    old = session(cost_excl_vat=None, tariff_id=None, periods=(), dimension_costs=())
    cdr = build_cdr(old)
    assert cdr.periods == (SessionPeriod(T0, 20000.0, 50 * MIN, 10 * MIN),)
    assert cdr.total_cost == Price(None, Decimal("7.35"))
    doc = to_ocpi(cdr)
    assert doc["total_cost"] == {"incl_vat": Decimal("7.35")} and doc["tariffs"] == []


def test_credit_negates_every_amount_and_keeps_volumes() -> None:
    cdr = build_cdr(replace(session(), dimension_costs=(
        DimensionCost("FLAT", Decimal("1.00"), Decimal("1.19")),
        DimensionCost("TIME", Decimal("0.50"), Decimal("0.60")))))
    credit = credit_for(cdr, 2, T0)
    assert credit.cdr_id == "LS-2024-01-01-001-v1-credit" and credit.credit
    assert credit.credit_reference_id == cdr.cdr_id and credit.issued_version == 2
    for name in ("total_cost", "total_fixed_cost", "total_time_cost"):
        original, negated = getattr(cdr, name), getattr(credit, name)
        assert negated.excl_vat == -original.excl_vat and negated.incl_vat == -original.incl_vat
    assert (credit.periods, credit.total_energy_wh, credit.total_time_ms) == (
        cdr.periods, cdr.total_energy_wh, cdr.total_time_ms)
    assert credit.last_updated_ms == cdr.last_updated_ms  # never earlier than the credited one
    assert to_ocpi(credit)["credit_reference_id"] == cdr.cdr_id
    with pytest.raises(ValueError, match="credit CDR"):
        credit_for(credit, 3, T0)


def test_the_tariff_goes_into_the_cdr_as_the_ocpi_tariff_it_was_read_from() -> None:
    book = load_tariff_book(EXAMPLE)
    for tariff in book.tariffs.values():
        doc = ocpi_tariff(tariff)
        again = parse_tariff_book(orjson.loads(ocpi_json({"tariffs": [doc]})))
        assert again.tariffs[tariff.tariff_id] == tariff
    standard = ocpi_tariff(book.tariffs["STANDARD"])
    assert standard["elements"][1]["restrictions"] == {"start_time": "22:00",
                                                       "end_time": "06:00"}
    assert standard["max_price"] == {"excl_vat": Decimal("60.00"), "incl_vat": Decimal("71.40")}
    cdr = build_cdr(session(tariff_id="STANDARD"))
    assert to_ocpi(cdr, book.tariffs["STANDARD"])["tariffs"] == [standard]
    assert to_ocpi(cdr, book.tariffs["FAST"])["tariffs"] == [{"id": "STANDARD",
                                                              "currency": "EUR"}]


# -- properties ----------------------------------------------------------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> list[ChargingSession]:
    """A session's versions as a sink may receive them: some versions missing (compacted
    away), some delivered again (replays), never a newer one before an older one first
    arrives, except on replay."""
    count = draw(st.integers(1, 6))
    versions = sorted(draw(st.sets(st.integers(1, 10), min_size=1, max_size=count)))
    sessions = {}
    for v in versions:
        costs = draw(st.lists(st.tuples(st.sampled_from(DIMENSIONS), CENTS, CENTS),
                              max_size=4, unique_by=lambda c: c[0]))
        sessions[v] = session(
            version=v, cost=draw(CENTS), cost_excl_vat=draw(CENTS),
            end_ms=T0 + v * MIN, energy_wh=draw(st.floats(0, 1e6)),
            dimension_costs=tuple(DimensionCost(d, e, i) for d, e, i in sorted(costs)))
    order = [sessions[v] for v in versions]
    replays = draw(st.lists(st.sampled_from(order), max_size=4))
    return order + replays


def run(delivered: list[ChargingSession]) -> list[Cdr]:
    issued: list[Cdr] = []
    for s in delivered:
        issued.extend(issue(s, issued))
    return issued


@given(deliveries())
def test_all_cdrs_of_a_session_sum_to_its_latest_cost(delivered: list[ChargingSession]) -> None:
    issued = run(delivered)
    latest = max(delivered, key=lambda s: s.version)
    assert sum((c.total_cost.incl_vat for c in issued), Decimal(0)) == latest.cost
    assert sum((c.total_cost.excl_vat or Decimal(0) for c in issued),
               Decimal(0)) == latest.cost_excl_vat
    for dimension in DIMENSIONS:
        expected = sum((c.incl_vat for c in latest.dimension_costs if c.dimension == dimension),
                       Decimal(0))
        attribute = {"ENERGY": "total_energy_cost", "FLAT": "total_fixed_cost",
                     "PARKING_TIME": "total_parking_cost", "TIME": "total_time_cost"}[dimension]
        prices = [getattr(c, attribute) for c in issued]
        assert sum((p.incl_vat for p in prices if p is not None), Decimal(0)) == expected
    live = [c for c in issued if not c.credit
            and c.cdr_id not in {x.credit_reference_id for x in issued}]
    assert [c.session_version for c in live] == [latest.version]


@given(deliveries())
def test_ids_are_deterministic_unique_and_issued_in_order(
        delivered: list[ChargingSession]) -> None:
    issued = run(delivered)
    assert run(delivered) == issued
    ids = [c.cdr_id for c in issued]
    assert len(set(ids)) == len(ids)
    assert sorted(issued, key=lambda c: c.issue_order) == issued
    for c in issued:
        suffix = f"-v{c.session_version}" + ("-credit" if c.credit else "")
        assert c.cdr_id == c.session_id + suffix


@given(deliveries())
def test_a_credit_is_the_exact_negation_of_what_it_credits(
        delivered: list[ChargingSession]) -> None:
    issued = {c.cdr_id: c for c in run(delivered)}
    for c in issued.values():
        if c.credit:
            assert c.credit_reference_id is not None
            original = issued[c.credit_reference_id]
            assert c.total_cost.incl_vat + original.total_cost.incl_vat == 0
            assert replace(c, cdr_id=original.cdr_id, credit=False, credit_reference_id=None,
                           issued_version=original.issued_version,
                           last_updated_ms=original.last_updated_ms,
                           total_cost=original.total_cost,
                           total_fixed_cost=original.total_fixed_cost,
                           total_energy_cost=original.total_energy_cost,
                           total_time_cost=original.total_time_cost,
                           total_parking_cost=original.total_parking_cost) == original


def test_a_stitched_correction_bills_the_difference() -> None:
    """End to end in the pure core: a late meter value corrects a closed session, and its
    CDRs (v1, credit of v1, v2) sum to the corrected cost."""
    stitcher = SessionStitcher(StitcherConfig(
        4, IdTemplate.parse("EV-{num:09d}"), SimpleTariff("EUR", Decimal("0.50"),
                                                          Decimal("0.05"))))

    def ev(kind: EventKind, t: int, energy: float) -> MeterEvent:
        return MeterEvent(f"e{t}-{kind}", "CS-1", 1, kind, t, t, transaction_id="T1",
                          energy_wh=energy)

    events = [ev(EventKind.STARTED, T0, 0.0), ev(EventKind.METER, T0 + 10 * MIN, 4000.0),
              ev(EventKind.ENDED, T0 + 20 * MIN, 8000.0),
              ev(EventKind.METER, T0 + 15 * MIN, 7000.0)]
    state, completed = None, []
    for offset, event in enumerate(events):
        result = stitcher.apply(state, event, EventPosition(0, offset))
        state = result.state
        completed.extend(result.completed)
    completed.extend(stitcher.expire(state, T0 + 10**9, T0 + 10**9))
    assert [s.version for s in completed] == [1, 2]
    issued = run(completed)
    latest = completed[-1]
    assert sum((c.total_cost.incl_vat for c in issued), Decimal(0)) == latest.cost
    assert sum((c.total_cost.excl_vat or Decimal(0) for c in issued),
               Decimal(0)) == latest.cost_excl_vat
    sid = latest.session_id
    assert [c.cdr_id for c in issued] == [f"{sid}-v1", f"{sid}-v1-credit", f"{sid}-v2"]
