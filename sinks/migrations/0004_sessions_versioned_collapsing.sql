-- charging_sessions, rebuilt for reports and rollups (replaces the table of 0001, keeping
-- its rows). Why each choice:
-- * VersionedCollapsingMergeTree(sign, version): a corrected session is written as a
--   cancel row of the version it replaces (sign -1, same values) plus the new version
--   (sign +1), in ONE insert under the batch's token (sinks/session_sink.py). FINAL still
--   shows only the latest version, and the rollup views below can sum `sign * x`, so a
--   correction moves the rollups by its difference instead of counting the session twice.
--   A correction that moves the start into another month cancels in the old partition.
-- * ORDER BY session_id: the support-call lookup by ID is a primary-key point query
--   (measured in `chargewatch bench reports`); reports by station and day read the rollups,
--   which are ordered by station and day.
-- * LowCardinality for the few-valued strings; ZSTD on wide numbers; time columns are not
--   sorted here, so Delta would not help them.
RENAME TABLE {database}.charging_sessions TO {database}.charging_sessions_0001;

CREATE TABLE {database}.charging_sessions
(
    session_id     String,
    version        UInt32,
    sign           Int8 DEFAULT 1,
    state          LowCardinality(String),
    station_id     LowCardinality(String),
    connector_id   UInt16,
    transaction_id Nullable(String) CODEC(ZSTD(1)),
    id_tag         Nullable(String) CODEC(ZSTD(1)),
    vehicle_id     Nullable(String) CODEC(ZSTD(1)),
    start_time     DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    end_time       DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    meter_start_wh Float64 CODEC(ZSTD(1)),
    meter_end_wh   Float64 CODEC(ZSTD(1)),
    energy_wh      Float64 CODEC(ZSTD(1)),
    soc_start_pct  Nullable(Float32),
    soc_end_pct    Nullable(Float32),
    max_power_w    Float64 CODEC(ZSTD(1)),
    avg_power_w    Float64 CODEC(ZSTD(1)),
    charging_ms    UInt64 CODEC(ZSTD(1)),
    plugged_ms     UInt64 CODEC(ZSTD(1)),
    cost           Decimal(18, 4) CODEC(ZSTD(1)),
    currency       LowCardinality(String),
    event_count    UInt32 CODEC(ZSTD(1)),
    stop_reason    LowCardinality(Nullable(String)),
    flags          Array(LowCardinality(String)),
    _topic         LowCardinality(String),
    _partition     Int32,
    _offset        Int64 CODEC(ZSTD(1)),
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(ZSTD(1))
)
ENGINE = VersionedCollapsingMergeTree(sign, version)
PARTITION BY toYYYYMM(start_time)
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {database}.charging_sessions
    (session_id, version, sign, state, station_id, connector_id, transaction_id, id_tag,
     vehicle_id, start_time, end_time, meter_start_wh, meter_end_wh, energy_wh, soc_start_pct,
     soc_end_pct, max_power_w, avg_power_w, charging_ms, plugged_ms, cost, currency,
     event_count, stop_reason, flags, _topic, _partition, _offset, inserted_at)
SELECT session_id, version, 1, state, station_id, connector_id, transaction_id, id_tag,
       vehicle_id, start_time, end_time, meter_start_wh, meter_end_wh, energy_wh,
       soc_start_pct, soc_end_pct, max_power_w, avg_power_w, charging_ms, plugged_ms, cost,
       currency, event_count, stop_reason, flags, _topic, _partition, _offset, inserted_at
FROM {database}.charging_sessions_0001 FINAL;

DROP TABLE {database}.charging_sessions_0001;
