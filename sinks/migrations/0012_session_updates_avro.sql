-- Running updates arrive as Avro and ClickHouse reads them itself: the sink hands over the
-- messages' bodies as one Avro container per batch (sinks/avro_blocks.py) into this Null
-- table, whose columns are the ChargingSession fields it needs under their Avro names; the
-- view renames them into session_updates. Decoding the updates in Python was most of the
-- sink's work (a running update per open session per processor batch).
CREATE TABLE IF NOT EXISTS {database}.session_updates_in
(
    session_id     String,
    station_id     String,
    connector_id   UInt16,
    transaction_id Nullable(String),
    vehicle_id     Nullable(String),
    start_ms       DateTime64(3, 'UTC'),
    end_ms         DateTime64(3, 'UTC'),
    energy_wh      Float64,
    soc_end_pct    Nullable(Float64),
    avg_power_w    Float64,
    cost           Decimal(18, 4),
    currency       String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.session_updates_from_avro
TO {database}.session_updates
AS SELECT session_id, station_id, connector_id, transaction_id, vehicle_id,
          start_ms AS start_time, end_ms AS updated_time, energy_wh,
          toNullable(toFloat32(soc_end_pct)) AS soc_pct, avg_power_w AS power_w, cost, currency
FROM {database}.session_updates_in;
