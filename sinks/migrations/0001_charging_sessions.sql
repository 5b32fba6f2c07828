-- One row per published version of a completed (or incomplete) charging session.
-- ReplacingMergeTree(version) keeps the highest version of each session_id once parts
-- merge; readers use FINAL or the charging_sessions_latest view. Optional strings are
-- Nullable (NULL = the charger did not send it). Rows replace each other only within one
-- month partition (PARTITION BY start month): a correction that moves a session's start
-- into another month leaves two rows, which session_by_id resolves by version.
CREATE TABLE IF NOT EXISTS {database}.charging_sessions
(
    session_id     String,
    version        UInt32,
    state          LowCardinality(String),
    station_id     LowCardinality(String),
    connector_id   UInt16,
    transaction_id Nullable(String),
    id_tag         Nullable(String),
    vehicle_id     Nullable(String),
    start_time     DateTime64(3, 'UTC'),
    end_time       DateTime64(3, 'UTC'),
    meter_start_wh Float64,
    meter_end_wh   Float64,
    energy_wh      Float64,
    soc_start_pct  Nullable(Float32),
    soc_end_pct    Nullable(Float32),
    max_power_w    Float64,
    avg_power_w    Float64,
    charging_ms    UInt64,
    plugged_ms     UInt64,
    cost           Decimal(18, 4),
    currency       LowCardinality(String),
    event_count    UInt32,
    stop_reason    Nullable(String),
    flags          Array(LowCardinality(String)),
    _topic         LowCardinality(String),
    _partition     Int32,
    _offset        Int64,
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(start_time)
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS {database}.charging_sessions_latest AS
SELECT
    session_id, version, state, station_id, connector_id, transaction_id, id_tag, vehicle_id,
    start_time, end_time, meter_start_wh, meter_end_wh, energy_wh, soc_start_pct, soc_end_pct,
    max_power_w, avg_power_w, charging_ms, plugged_ms, cost, currency, event_count,
    stop_reason, flags, _topic, _partition, _offset, inserted_at
FROM {database}.charging_sessions FINAL;
