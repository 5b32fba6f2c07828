-- Running state of open sessions, for live monitoring (what `session-updates` carries):
-- one row per update, the latest per session wins, and rows expire a day after their last
-- event, so the table holds only what is (or recently was) running.
CREATE TABLE IF NOT EXISTS {database}.session_updates
(
    session_id     String,
    station_id     LowCardinality(String),
    connector_id   UInt16,
    transaction_id Nullable(String),
    vehicle_id     Nullable(String),
    start_time     DateTime64(3, 'UTC'),
    updated_time   DateTime64(3, 'UTC'),
    energy_wh      Float64,
    soc_pct        Nullable(Float32),
    power_w        Float64,
    cost           Decimal(18, 4),
    currency       LowCardinality(String),
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_time)
PARTITION BY toDate(updated_time)
ORDER BY session_id
TTL toDateTime(updated_time) + INTERVAL 1 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
