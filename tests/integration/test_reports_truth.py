"""Every report equals the same figures computed in Python from the simulator's ground truth.

The sessions are the simulator's true sessions (with its charging windows from the session
plans), made messier in known ways: some incomplete, some ended by a power loss, some with
zero energy, and some first published with wrong values (another day, half the energy)
and then corrected by version 2; a processor replay republishes some sessions at new
offsets. All of it goes in through the real sink path (SessionSink, dedup tokens, the
rollup views), and each report is compared with a computation over the final sessions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver.client import Client

from chargewatch.lookup import run_report
from producers.reference_pricing import DEFAULT_SIMPLE_PRICES
from producers.simulator import FleetConfig, simulate
from schemas.codec import Codec
from schemas.records import ChargingSession, SessionState
from sinks import analytics, reports
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.session_sink import SessionSink
from sinks.table_sink import Message

pytestmark = pytest.mark.integration

H = 3_600_000
DAY = 86_400_000
CONFIG = FleetConfig(seed=11, stations=12, duration_s=2 * 86_400)


def _final_sessions() -> tuple[list[ChargingSession], list[ChargingSession]]:
    """(final versions, wrong first versions that version 2 corrects)."""
    simulation = simulate(CONFIG)
    final: list[ChargingSession] = []
    wrong: list[ChargingSession] = []
    for i, (truth, plan) in enumerate(zip(simulation.truth(), simulation.plans(), strict=True)):
        state, reason, energy = SessionState.COMPLETED, plan.stop_reason, float(truth.energy_wh)
        if i % 13 == 5:
            state = SessionState.INCOMPLETE
        if i % 17 == 3:
            reason = "PowerLoss"
        if i % 19 == 7:
            energy = 0.0
        plugged = truth.end_ms - truth.start_ms
        charging = max(0, min(plan.full_ms, truth.end_ms) - truth.start_ms)
        cost = truth.cost if energy else DEFAULT_SIMPLE_PRICES.cost(0, plugged)
        session = ChargingSession(
            session_id=f"EV-{i:09d}", version=1, state=state, station_id=truth.station_id,
            connector_id=truth.connector_id, transaction_id=truth.transaction_id,
            id_tag=truth.id_tag, vehicle_id=None if i % 23 == 0 else truth.vehicle_id,
            start_ms=truth.start_ms, end_ms=truth.end_ms, meter_start_wh=1000.0,
            meter_end_wh=1000.0 + energy, energy_wh=energy, soc_start_pct=truth.soc_start_pct,
            soc_end_pct=truth.soc_end_pct, max_power_w=float(plan.curve.max_w),
            avg_power_w=energy * H / charging if charging else 0.0, charging_ms=charging,
            plugged_ms=plugged, cost=cost, currency=truth.currency, event_count=10,
            stop_reason=reason)
        if i % 9 == 4:
            wrong.append(dataclasses.replace(
                session, start_ms=session.start_ms - DAY, end_ms=session.end_ms - DAY,
                energy_wh=energy / 2, cost=cost / 2, state=SessionState.INCOMPLETE))
            session = dataclasses.replace(session, version=2)
        final.append(session)
    return final, wrong


FINAL, WRONG = _final_sessions()
ANOMALIES = [  # (id, kind, severity, station, detected_ms, message)
    ("A1", "connector_fault", "critical", FINAL[0].station_id, FINAL[0].start_ms, "Faulted"),
    ("A2", "connector_fault", "warning", FINAL[0].station_id, FINAL[0].start_ms + 60_000, "x"),
    ("A3", "zero_energy", "info", FINAL[1].station_id, FINAL[1].start_ms + DAY, "no kWh"),
    ("A4", "ground_fault", "critical", FINAL[-1].station_id, FINAL[-1].start_ms, "GFCI"),
]


@pytest.fixture(scope="module")
def loaded(chdb_url: str) -> Iterator[tuple[Client, str]]:
    database = f"cw_{uuid.uuid4().hex[:10]}"
    client = connect(chdb_url)
    migrate(client, database)
    codec = Codec()
    sink, offset = SessionSink(client, database, codec), 0

    def write(batch: list[ChargingSession]) -> None:
        nonlocal offset
        messages = [Message(offset + k, codec.encode_session(s, "t")) for k, s in
                    enumerate(batch)]
        sink.write("t", 0, messages, f"t-0-{offset}-{offset + len(batch) - 1}")
        offset += len(batch)

    write(WRONG)
    for start in range(0, len(FINAL), 50):
        write(FINAL[start:start + 50])
    write(FINAL[:40])  # a processor replay: same versions at new offsets
    client.insert(f"{database}.anomalies",
                  [(a, k, sev, st, None, None, ms, msg, {"why": "test"}, 0, n)
                   for n, (a, k, sev, st, ms, msg) in enumerate(ANOMALIES * 2)],
                  column_names=["anomaly_id", "kind", "severity", "station_id",
                                "connector_id", "session_id", "detected_at", "message",
                                "evidence", "_partition", "_offset"])
    yield client, database
    client.close()


def day(ms: int) -> dt.date:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)).date()


def failed(s: ChargingSession) -> bool:
    return s.state is SessionState.INCOMPLETE or s.stop_reason in reports.FAULT_STOP_REASONS


def close(actual: Any, expected: Any, places: int) -> bool:
    return abs(float(actual) - float(expected)) <= 1.01 * 10 ** -places


def assert_rows(actual: list[tuple], expected: list[tuple], places: dict[int, int]) -> None:
    """Equal row by row; columns in `places` compared to that many decimals."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        for i, (a, e) in enumerate(zip(got, want, strict=True)):
            assert close(a, e, places[i]) if i in places else a == e, (i, got, want)


def test_data_set_exercises_every_case() -> None:
    assert len(FINAL) > 150 and len(WRONG) > 15
    assert sum(map(failed, FINAL)) > 10 and sum(s.energy_wh == 0 for s in FINAL) > 5


def test_summary_and_station_daily(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    summary = reports.summary(client, db).rows
    energy = sum(s.energy_wh for s in FINAL)
    revenue = sum(s.cost for s in FINAL)
    assert summary[0][:6] == ("EUR", len(FINAL), sum(s.state == "completed" for s in FINAL),
                              sum(s.state == "incomplete" for s in FINAL),
                              round(energy / 1000, 3), revenue)
    assert summary[0][7:] == (len({s.station_id for s in FINAL}),
                              len({s.vehicle_id for s in FINAL if s.vehicle_id}))
    groups: dict[tuple, list[ChargingSession]] = defaultdict(list)
    for s in FINAL:
        groups[(day(s.start_ms), s.station_id, s.currency)].append(s)
    expected = [(*key, len(g), sum(s.state == "completed" for s in g),
                 sum(s.state == "incomplete" for s in g), sum(map(failed, g)),
                 sum(s.energy_wh <= 0 for s in g), sum(s.energy_wh for s in g) / 1000,
                 sum(s.cost for s in g), sum(s.plugged_ms for s in g) / 60000,
                 sum(s.charging_ms for s in g) / 60000, _utilization_of_day(*key[:2]))
                for key, g in sorted(groups.items())]
    places = {8: 3, 10: 1, 11: 1, 12: 2}
    rollup = reports.station_daily(client, db)
    assert_rows(rollup.rows, expected, places)
    base = reports.station_daily(client, db, tz="Europe/Oslo")  # the sessions-table path
    assert sum(r[3] for r in base.rows) == len(FINAL)
    one = FINAL[7]
    filtered = run_report(client, db, "station-daily", station=one.station_id,
                          date_from=day(one.start_ms), date_to=str(day(one.start_ms)))
    assert_rows(filtered.rows, [r for r in expected if r[:2] == (day(one.start_ms),
                                                                 one.station_id)], places)


def _utilization_of_day(on: dt.date, station: str) -> float:
    """docs/bi.md's definition, from the plan: plugged time in the day over connectors seen
    x the day's part of the observed span (first to last hour anyone was plugged in)."""
    plugged = defaultdict(int)
    for s in FINAL:
        for h, ms_in_hour, _ in _hours(s):
            plugged[(s.station_id, h)] += ms_in_hour
    busy = [h for h, v in ((h, v) for (_, h), v in plugged.items()) if v > 0]
    first, last = min(busy), max(busy) + H
    day_start = (on - dt.date(1970, 1, 1)).days * DAY
    observed = max(0, min(day_start + DAY, last) - max(day_start, first))
    connectors = len({s.connector_id for s in FINAL if s.station_id == station})
    mine = sum(v for (st, h), v in plugged.items() if st == station and day(h) == on)
    return 100 * mine / (connectors * observed)


def test_summary_honours_the_filters(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    one = FINAL[7]
    cases = [({"station": one.station_id}, lambda s: s.station_id == one.station_id),
             ({"date_from": day(one.start_ms), "date_to": day(one.start_ms)},
              lambda s: day(s.start_ms) == day(one.start_ms)),
             ({"vehicle": one.vehicle_id}, lambda s: s.vehicle_id == one.vehicle_id)]
    for given, keep in cases:
        mine = [s for s in FINAL if keep(s)]
        assert 0 < len(mine) < len(FINAL)
        row = run_report(client, db, "summary", **given).rows[0]
        assert row[:6] == ("EUR", len(mine), sum(s.state == "completed" for s in mine),
                           sum(s.state == "incomplete" for s in mine),
                           round(sum(s.energy_wh for s in mine) / 1000, 3),
                           sum(s.cost for s in mine)), given
        assert row[7:] == (len({s.station_id for s in mine}),
                           len({s.vehicle_id for s in mine if s.vehicle_id})), given


def test_station_health(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    by_day: dict[dt.date, list[ChargingSession]] = defaultdict(list)
    for s in FINAL:
        by_day[day(s.start_ms)].append(s)
    faults = Counter(day(a[4]) for a in ANOMALIES if "fault" in a[1])
    fault_stations = {d: len({a[3] for a in ANOMALIES if "fault" in a[1] and day(a[4]) == d})
                      for d in faults}
    expected = [(d, len(g), sum(map(failed, g)), 100 * sum(map(failed, g)) / len(g),
                 sum(s.energy_wh <= 0 for s in g), 100 * sum(s.energy_wh <= 0 for s in g) / len(g),
                 sum(s.state == "incomplete" for s in g), faults.get(d, 0),
                 fault_stations.get(d, 0)) for d, g in sorted(by_day.items())]
    assert_rows(analytics.station_health(client, db).rows, expected, {3: 2, 5: 2})


def _hours(s: ChargingSession) -> Iterator[tuple[int, int, float]]:
    """(hour start, plugged ms in that hour, energy spread over the charging window)."""
    start, end = s.start_ms, max(s.end_ms, s.start_ms)
    charge_end = min(end, start + s.charging_ms)
    for h in range(start - start % H, max(end, start + 1), H):
        plugged = max(0, min(end, h + H) - max(start, h))
        if charge_end > start:
            energy = s.energy_wh * max(0, min(charge_end, h + H) - max(start, h)) \
                / (charge_end - start)
        else:
            energy = s.energy_wh if h == start - start % H else 0.0
        yield h, plugged, energy


def test_utilization_and_bottlenecks(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    per_hour: dict[tuple[str, int], int] = Counter()
    for s in FINAL:
        for h, plugged, _ in _hours(s):
            per_hour[(s.station_id, h)] += plugged
    hours_seen = [h for _, h in per_hour]
    span = (max(hours_seen) - min(hours_seen)) // H + 1
    expected = []
    for station in sorted({s.station_id for s in FINAL}):
        mine = [s for s in FINAL if s.station_id == station]
        n = len({s.connector_id for s in mine})
        in_use = [v / H for (st, _), v in per_hour.items() if st == station]
        queued, blocking = 0, 0
        for connector in {s.connector_id for s in mine}:
            seq = sorted((s for s in mine if s.connector_id == connector),
                         key=lambda s: s.start_ms)
            for prev, nxt in zip(seq, seq[1:], strict=False):
                if nxt.start_ms - prev.end_ms <= analytics.QUEUE_GAP_MIN * 60_000:
                    queued += 1
                    idle = prev.plugged_ms - prev.charging_ms
                    blocking += idle if idle >= analytics.BLOCKING_IDLE_MIN * 60_000 else 0
        plugged_h = sum(in_use)
        expected.append((station, n, plugged_h, 100 * plugged_h / (n * span),
                         100 * max(in_use) / n,
                         sum(v >= analytics.NEAR_FULL * n for v in in_use), queued,
                         blocking / H))
    expected.sort(key=lambda r: (-round(r[3], 2), r[0]))
    assert sum(r[6] for r in expected) > 0, "the data set has no queue to find"
    actual = analytics.utilization(client, db, limit=1000).rows
    assert_rows(actual, expected, {2: 2, 3: 2, 4: 2, 7: 2})


def test_one_utilization_for_the_same_station_and_day(loaded: tuple[Client, str]) -> None:
    """`station-daily` and `utilization` over one day give each station the same figure."""
    client, db = loaded
    for on in sorted({day(s.start_ms) for s in FINAL}):
        daily = {r[1]: r[-1] for r in reports.station_daily(client, db, date_from=on,
                                                            date_to=on).rows}
        busiest = {r[0]: r[3] for r in analytics.utilization(client, db, date_from=on,
                                                             date_to=on, limit=1000).rows}
        assert daily and daily == {k: v for k, v in busiest.items() if k in daily}


def test_patterns(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    starts = Counter()
    for s in FINAL:
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=s.start_ms)
        starts[(moment.isoweekday(), moment.hour)] += 1
    heat = analytics.heatmap(client, db)
    assert [row[0] for row in heat.rows] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert [list(row[1:]) for row in heat.rows] == [
        [starts[(d, h)] for h in range(24)] for d in range(1, 8)]
    for zone in ("Asia/Kolkata", "America/New_York"):  # +5:30 and -5:00 from UTC
        local = Counter()
        for s in FINAL:
            moment = dt.datetime.fromtimestamp(s.start_ms / 1000, ZoneInfo(zone))
            local[(moment.isoweekday(), moment.hour)] += 1
        assert local != starts
        heat = run_report(client, db, "heatmap", tz=zone)
        assert [list(row[1:]) for row in heat.rows] == [
            [local[(d, h)] for h in range(24)] for d in range(1, 8)], zone

    def buckets(values: list[float], bounds: tuple[int, ...]) -> list[int]:
        return [sum(1 for v in values if (i == 0 or v >= bounds[i - 1])
                    and (i == len(bounds) or v < bounds[i])) for i in range(len(bounds) + 1)]

    lengths = analytics.length_distribution(client, db)
    assert [r[1] for r in lengths.rows] == buckets([s.plugged_ms / 60000 for s in FINAL],
                                                   analytics.LENGTH_BUCKETS_MIN)
    assert lengths.rows[0][0] == "< 15 min" and lengths.rows[-1][0] == ">= 480 min"
    energy = analytics.energy_distribution(client, db)
    assert [r[1] for r in energy.rows] == buckets([s.energy_wh / 1000 for s in FINAL],
                                                  analytics.ENERGY_BUCKETS_KWH)
    assert close(sum(r[2] for r in energy.rows), 100, 1)


def test_efficiency(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    expected = []
    for station in sorted({s.station_id for s in FINAL}):
        mine = [s for s in FINAL if s.station_id == station]
        energy, charging = sum(s.energy_wh for s in mine), sum(s.charging_ms for s in mine)
        avg_kw = round(energy / (charging / H) / 1000, 2) if charging else 0.0
        peak_kw = round(max(s.max_power_w for s in FINAL if s.station_id == station
                            ) / 1000, 2)
        expected.append((station, energy / 1000, charging / H, avg_kw, peak_kw,
                         100 * avg_kw / peak_kw, energy / (sum(s.plugged_ms for s in mine)
                                                           / 60000)))
    expected.sort(key=lambda r: (round(r[5], 1), r[0]))
    assert_rows(analytics.efficiency(client, db, limit=1000).rows, expected,
                {1: 3, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1})


def test_costs(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    vehicles: dict[str | None, list[ChargingSession]] = defaultdict(list)
    for s in FINAL:
        vehicles[s.vehicle_id].append(s)
    expected = sorted(
        ((v, "EUR", len(g), sum(s.energy_wh for s in g) / 1000, sum(s.cost for s in g),
          (sum(s.cost for s in g) / len(g)).quantize(Decimal("0.01"), ROUND_HALF_UP))
         for v, g in vehicles.items()),
        key=lambda r: (-r[4], "" if r[0] is None else r[0]), reverse=False)
    actual = reports.cost_per_vehicle(client, db).rows
    assert sorted(actual, key=lambda r: (-r[4], r[0] or "")) == sorted(
        [(r[0], r[1], r[2], round(r[3], 3), r[4], r[5]) for r in expected],
        key=lambda r: (-r[4], r[0] or ""))
    one = FINAL[3].vehicle_id
    assert [r[0] for r in reports.cost_per_vehicle(client, db, vehicle=one).rows] == [one]
    stations: dict[str, list[ChargingSession]] = defaultdict(list)
    for s in FINAL:
        stations[s.station_id].append(s)
    rows = reports.cost_per_station(client, db).rows
    assert {r[0]: (r[2], r[4]) for r in rows} == {
        st: (len(g), sum(s.cost for s in g)) for st, g in stations.items()}
    assert [r[4] for r in rows] == sorted((r[4] for r in rows), reverse=True)
    top = reports.top_stations(client, db, limit=3).rows
    assert [(r[0], r[4]) for r in top] == [(r[0], r[4]) for r in rows[:3]]


def test_top_anomalies(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    rows = analytics.top_anomalies(client, db).rows
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("connector_fault", FINAL[0].station_id, 2, "critical"),
        ("ground_fault", FINAL[-1].station_id, 1, "critical"),
        ("zero_energy", FINAL[1].station_id, 1, "info")]


def test_lookups_give_the_latest_version(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    for s in FINAL[:60]:
        found = reports.session_by_id(client, db, s.session_id)
        assert found is not None and found["version"] == s.version
        assert (found["energy_wh"], found["cost"]) == (s.energy_wh, s.cost)
        by_tx = reports.session_by_transaction(client, db, s.station_id, s.transaction_id)
        assert by_tx is not None and by_tx["session_id"] == s.session_id
        assert "sign" not in found
    assert reports.session_by_id(client, db, "EV-999999999") is None
    assert reports.session_by_transaction(client, db, FINAL[0].station_id, "nope") is None


def test_unknown_report_and_filter_are_refused(loaded: tuple[Client, str]) -> None:
    from infra.errors import UsageError

    client, db = loaded
    with pytest.raises(UsageError, match="unknown report 'nope'"):
        run_report(client, db, "nope")
    with pytest.raises(UsageError, match="does not take --vehicle"):
        run_report(client, db, "utilization", vehicle="V1")


def test_money_is_decimal(loaded: tuple[Client, str]) -> None:
    client, db = loaded
    assert isinstance(reports.cost_per_station(client, db).rows[0][4], Decimal)
