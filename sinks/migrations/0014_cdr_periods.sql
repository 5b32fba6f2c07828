-- CDR charging periods stored as metered, their JSON rendered when read.
-- Rendering the JSON in the CDR view (0013) was a third of the CPU of inserting a session:
-- cdrs now stores `periods` (the tariff engine's periods, as the Avro schema and
-- charging/cdr.py carry them) and `charging_periods` is an ALIAS giving the JSON it held
-- before (one object per period, an integral float written with ".0"), computed only for
-- the rows a query reads. Both sink paths store the same `periods` and the JSON has one
-- writer, so floats ClickHouse writes differently from orjson need no check any more: the
-- json_energies constraint of sessions_in goes (a Null table cannot drop a constraint, so
-- it is re-created with its two views). Existing CDRs keep their periods, parsed from
-- their stored JSON.
DROP VIEW IF EXISTS {database}.cdrs_from_avro;

DROP VIEW IF EXISTS {database}.sessions_from_avro;

DROP TABLE IF EXISTS {database}.sessions_in;

ALTER TABLE {database}.cdrs ADD COLUMN IF NOT EXISTS periods
    Array(Tuple(start_ms Int64, energy_wh Float64, charging_ms Int64, parking_ms Int64,
                energy_element Int32, time_element Int32, parking_element Int32))
    AFTER parking_cost_incl_vat;

ALTER TABLE {database}.cdrs UPDATE periods = JSONExtract(charging_periods, toTypeName(periods))
    WHERE true SETTINGS mutations_sync = 2;

ALTER TABLE {database}.cdrs DROP COLUMN charging_periods;

ALTER TABLE {database}.cdrs ADD COLUMN charging_periods String ALIAS
    concat('[', arrayStringConcat(arrayMap(p -> concat(
              '{"start_ms":', toString(p.1),
              ',"energy_wh":', if(p.2 = floor(p.2) AND abs(p.2) < 1e16,
                                  concat(toString(p.2), '.0'), toString(p.2)),
              ',"charging_ms":', toString(p.3), ',"parking_ms":', toString(p.4),
              ',"energy_element":', toString(p.5), ',"time_element":', toString(p.6),
              ',"parking_element":', toString(p.7), '}'), periods), ','), ']')
    AFTER periods;

CREATE TABLE IF NOT EXISTS {database}.sessions_in
(
    session_id      String,
    version         UInt32,
    state           String,
    station_id      String,
    connector_id    UInt16,
    transaction_id  Nullable(String),
    id_tag          Nullable(String),
    vehicle_id      Nullable(String),
    start_ms        Int64,
    end_ms          Int64,
    meter_start_wh  Float64,
    meter_end_wh    Float64,
    energy_wh       Float64,
    soc_start_pct   Nullable(Float64),
    soc_end_pct     Nullable(Float64),
    max_power_w     Float64,
    avg_power_w     Float64,
    charging_ms     Int64,
    plugged_ms      Int64,
    cost            Decimal(18, 4),
    currency        String,
    event_count     UInt32,
    stop_reason     Nullable(String),
    flags           Array(String),
    cost_excl_vat   Nullable(Decimal(18, 4)),
    tariff_id       Nullable(String),
    periods         Array(Tuple(start_ms Int64, energy_wh Float64, charging_ms Int64,
                                parking_ms Int64, energy_element Int32, time_element Int32,
                                parking_element Int32)),
    dimension_costs Array(Tuple(dimension String, excl_vat Decimal(18, 4),
                                incl_vat Decimal(18, 4))),
    _topic          String,
    _partition      Int32,
    _offset         Int64,
    CONSTRAINT known_state CHECK state IN ('open', 'completed', 'incomplete'),
    CONSTRAINT finite CHECK isFinite(meter_start_wh) AND isFinite(meter_end_wh)
        AND isFinite(energy_wh) AND isFinite(ifNull(soc_start_pct, 0))
        AND isFinite(ifNull(soc_end_pct, 0)) AND isFinite(max_power_w)
        AND isFinite(avg_power_w) AND arrayAll(p -> isFinite(p.2), periods),
    CONSTRAINT utf8 CHECK isValidUTF8(session_id) AND isValidUTF8(station_id)
        AND isValidUTF8(ifNull(transaction_id, '')) AND isValidUTF8(ifNull(id_tag, ''))
        AND isValidUTF8(ifNull(vehicle_id, '')) AND isValidUTF8(currency)
        AND isValidUTF8(ifNull(stop_reason, '')) AND isValidUTF8(ifNull(tariff_id, ''))
        AND arrayAll(f -> isValidUTF8(f), flags)
        AND arrayAll(c -> isValidUTF8(c.1), dimension_costs)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.sessions_from_avro
TO {database}.charging_sessions
AS SELECT session_id, version, toInt8(1) AS sign, state, station_id, connector_id,
          transaction_id, id_tag, vehicle_id,
          fromUnixTimestamp64Milli(start_ms, 'UTC') AS start_time,
          fromUnixTimestamp64Milli(end_ms, 'UTC') AS end_time, meter_start_wh, meter_end_wh,
          energy_wh, soc_start_pct, soc_end_pct, max_power_w, avg_power_w,
          charging_ms, plugged_ms, cost, currency, event_count, stop_reason, flags, _topic,
          _partition, _offset
FROM {database}.sessions_in;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.cdrs_from_avro
TO {database}.cdrs
AS SELECT concat(session_id, '-v', toString(version)) AS cdr_id, session_id,
          version AS session_version, version AS issued_version, false AS credit,
          CAST(NULL, 'Nullable(String)') AS credit_reference_id, station_id, connector_id,
          id_tag, vehicle_id, fromUnixTimestamp64Milli(start_ms, 'UTC') AS start_time,
          fromUnixTimestamp64Milli(end_ms, 'UTC') AS end_time, currency, tariff_id,
          cost_excl_vat AS total_cost_excl_vat, cost AS total_cost_incl_vat,
          if(flat = 0, NULL, dimension_costs[flat].2) AS fixed_cost_excl_vat,
          if(flat = 0, NULL, dimension_costs[flat].3) AS fixed_cost_incl_vat,
          energy_wh AS total_energy_wh,
          if(energy = 0, NULL, dimension_costs[energy].2) AS energy_cost_excl_vat,
          if(energy = 0, NULL, dimension_costs[energy].3) AS energy_cost_incl_vat,
          plugged_ms AS total_time_ms,
          if(time = 0, NULL, dimension_costs[time].2) AS time_cost_excl_vat,
          if(time = 0, NULL, dimension_costs[time].3) AS time_cost_incl_vat,
          arraySum(p -> p.4, billed) AS total_parking_ms,
          if(parking = 0, NULL, dimension_costs[parking].2) AS parking_cost_excl_vat,
          if(parking = 0, NULL, dimension_costs[parking].3) AS parking_cost_incl_vat,
          billed AS periods,
          fromUnixTimestamp64Milli(end_ms, 'UTC') AS last_updated
FROM
(
    SELECT *,
           if(empty(periods),
              [(start_ms, energy_wh, charging_ms, plugged_ms - charging_ms,
                toInt32(-1), toInt32(-1), toInt32(-1))],
              periods) AS billed,
           arrayLastIndex(c -> c.1 = 'FLAT', dimension_costs) AS flat,
           arrayLastIndex(c -> c.1 = 'ENERGY', dimension_costs) AS energy,
           arrayLastIndex(c -> c.1 = 'TIME', dimension_costs) AS time,
           arrayLastIndex(c -> c.1 = 'PARKING_TIME', dimension_costs) AS parking
    FROM {database}.sessions_in
    WHERE state != 'open' AND version >= 1
);
