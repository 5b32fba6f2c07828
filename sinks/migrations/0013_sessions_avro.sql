-- First versions of completed sessions arrive as Avro and ClickHouse reads them itself, as
-- the running updates do (0012): the sink hands over the bodies of a batch's first
-- versions of sessions it has not stored as one Avro container (sinks/avro_blocks.py) with
-- the message's topic, partition and offset appended to each body. Corrections, stored
-- sessions and anything else still go through Python (sinks/session_sink.py).
-- * sessions_in is a Null table under the ChargingSession field names; its constraints
--   refuse what the Python decoder refuses (an unknown state, a float that is not finite,
--   text that is not UTF-8) before any view writes, so the sink sends that batch through
--   Python, which dead-letters the bad message. They also refuse a period energy whose JSON ClickHouse
--   writes differently from orjson (|e| in [1e-6, 1e-5) or >= 1e16: "0.000001" vs "1e-6"; 1e16 for 1e+16,
--   compared on 300,000 random doubles); that batch goes through Python as it is.
-- * sessions_from_avro writes the charging_sessions row (sign +1), so the rollup views on
--   charging_sessions follow as for a Python insert.
-- * cdrs_from_avro issues the version's CDR exactly as charging/cdr.py build_cdr does
--   for a session with no CDR yet: the same row, charging_periods JSON included (orjson's
--   form: no spaces, an integral float written with ".0"). A test inserts the same
--   sessions both ways and compares the rows.
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
        AND arrayAll(c -> isValidUTF8(c.1), dimension_costs),
    CONSTRAINT json_energies CHECK arrayAll(e -> abs(e) < 1e-6 OR abs(e) >= 1e-5 AND abs(e) < 1e16,
        if(empty(periods), [energy_wh], arrayMap(p -> p.2, periods)))
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
          concat('[', arrayStringConcat(arrayMap(p -> concat(
              '{"start_ms":', toString(p.1),
              ',"energy_wh":', if(p.2 = floor(p.2) AND abs(p.2) < 1e16,
                                  concat(toString(p.2), '.0'), toString(p.2)),
              ',"charging_ms":', toString(p.3), ',"parking_ms":', toString(p.4),
              ',"energy_element":', toString(p.5), ',"time_element":', toString(p.6),
              ',"parking_element":', toString(p.7), '}'), billed), ','), ']')
              AS charging_periods,
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
