"""The session row, the CDR row and the running-update row: each declared once here.

Each column gives its Python expression (over the record the sink decoded) and its SQL
expression (over the Avro input table, whose columns are the ChargingSession fields;
sinks/derived_views.py). The Python builders and the views both derive from these, so a
new column is one line here (plus the target table's column, in a migration). A test
writes the same sessions both ways and compares the rows
(tests/integration/test_session_sink_paths.py).

Times: Python inserts epoch ms (DateTime64(3) columns take them); SQL converts the Avro
longs. The CDR of a first version is charging/cdr.py `build_cdr` in SQL: its columns
read the session's fields the way `build_cdr` fills the Cdr the Python column reads.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

from charging.cdr import Price
from sinks.mapping import Column, Mapping, field

_MS = "fromUnixTimestamp64Milli({}, 'UTC')"

SESSION_ROW = Mapping(
    table="charging_sessions", view="sessions_from_avro",
    params="s, topic, partition, offset, sign=1",
    columns=(
        field("session_id"), field("version"), Column("sign", "sign", "toInt8(1)"),
        Column("state", "str(s.state)", "state"), field("station_id"), field("connector_id"),
        field("transaction_id"), field("id_tag"), field("vehicle_id"),
        Column("start_time", "s.start_ms", _MS.format("start_ms")),
        Column("end_time", "s.end_ms", _MS.format("end_ms")),
        field("meter_start_wh"), field("meter_end_wh"), field("energy_wh"),
        field("soc_start_pct"), field("soc_end_pct"), field("max_power_w"), field("avg_power_w"),
        field("charging_ms"), field("plugged_ms"), field("cost"), field("currency"),
        field("event_count"), field("stop_reason"), Column("flags", "list(s.flags)", "flags"),
        Column("_topic", "topic", "_topic"), Column("_partition", "partition", "_partition"),
        Column("_offset", "offset", "_offset"),
    ))
"""charging_sessions (migrations 0001, 0004); `sign` -1 makes the cancel row of a stored
version (sinks/session_sink.py). The view writes first versions: sign +1."""


def _excl(price: Price | None) -> Decimal | None:
    return None if price is None else price.excl_vat


def _incl(price: Price | None) -> Decimal | None:
    return None if price is None else price.incl_vat


def _priced(name: str, helper: str) -> tuple[Column, Column]:
    """The excl./incl. VAT columns of one dimension's cost: its last DimensionCost, found
    by `helper` (its index, 0 if none)."""
    return (Column(f"{name}_excl_vat", f"excl(c.total_{name})",
                   f"if({helper} = 0, NULL, dimension_costs[{helper}].2)"),
            Column(f"{name}_incl_vat", f"incl(c.total_{name})",
                   f"if({helper} = 0, NULL, dimension_costs[{helper}].3)"))


CDR_ROW = Mapping(
    table="cdrs", view="cdrs_from_avro", params="c",
    columns=(
        Column("cdr_id", "c.cdr_id", "concat(session_id, '-v', toString(version))"),
        field("session_id", "c"), Column("session_version", "c.session_version", "version"),
        Column("issued_version", "c.issued_version", "version"),
        Column("credit", "c.credit", "false"),
        Column("credit_reference_id", "c.credit_reference_id", "CAST(NULL, 'Nullable(String)')"),
        field("station_id", "c"), field("connector_id", "c"), field("id_tag", "c"),
        field("vehicle_id", "c"), Column("start_time", "c.start_ms", _MS.format("start_ms")),
        Column("end_time", "c.end_ms", _MS.format("end_ms")), field("currency", "c"),
        field("tariff_id", "c"),
        Column("total_cost_excl_vat", "c.total_cost.excl_vat", "cost_excl_vat"),
        Column("total_cost_incl_vat", "c.total_cost.incl_vat", "cost"),
        *_priced("fixed_cost", "flat"),
        Column("total_energy_wh", "c.total_energy_wh", "energy_wh"),
        *_priced("energy_cost", "energy"),
        Column("total_time_ms", "c.total_time_ms", "plugged_ms"),
        *_priced("time_cost", "time"),
        Column("total_parking_ms", "c.total_parking_ms", "arraySum(p -> p.4, billed)"),
        *_priced("parking_cost", "parking"),
        Column("periods", "[asdict(p) for p in c.periods]", "billed"),
        Column("last_updated", "c.last_updated_ms", _MS.format("end_ms")),
    ),
    helpers=(
        ("billed", "if(empty(periods), [(start_ms, energy_wh, charging_ms, "
                   "plugged_ms - charging_ms, toInt32(-1), toInt32(-1), toInt32(-1))], periods)"),
        *((helper, f"arrayLastIndex(c -> c.1 = '{dimension}', dimension_costs)")
          for helper, dimension in (("flat", "FLAT"), ("energy", "ENERGY"), ("time", "TIME"),
                                    ("parking", "PARKING_TIME"))),
    ),
    where="state != 'open' AND version >= 1")
"""cdrs (migrations 0009, 0014). Python: the row of any issued Cdr (credits too), each
period as a dict (ClickHouse reads a named tuple from it). The view: the CDR a first
version of a closed session issues (`issue` with no CDR stored: `build_cdr`)."""

UPDATE_ROW = Mapping(
    table="session_updates", view="session_updates_from_avro", params="s",
    columns=(
        field("session_id"), field("station_id"), field("connector_id"), field("transaction_id"),
        field("vehicle_id"), Column("start_time", "s.start_ms", _MS.format("start_ms")),
        Column("updated_time", "s.end_ms", _MS.format("end_ms")), field("energy_wh"),
        Column("soc_pct", "s.soc_end_pct", "toNullable(toFloat32(soc_end_pct))"),
        Column("power_w", "s.avg_power_w", "avg_power_w"), field("cost"), field("currency"),
    ))
"""session_updates (migrations 0006, 0011): the running state of an open session."""

session_row = SESSION_ROW.builder()
cdr_row = CDR_ROW.builder({"excl": _excl, "incl": _incl, "asdict": asdict})
update_row = UPDATE_ROW.builder()
