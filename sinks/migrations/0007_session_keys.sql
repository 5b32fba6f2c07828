-- Lookup of a session by the charger's own transaction id: `(station_id, transaction_id)`
-- is a primary-key point query here, where charging_sessions (ordered by session_id) would
-- need a full scan or a skip index (bench: `chargewatch bench reports`). Kept by a view;
-- cancel rows (sign -1) are not keys. A charger may reuse a transaction id after a reset,
-- so one key can name several sessions: readers take the latest start.
CREATE TABLE IF NOT EXISTS {database}.session_keys
(
    station_id     LowCardinality(String),
    transaction_id String,
    session_id     String,
    start_time     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (station_id, transaction_id, session_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.session_keys_mv TO {database}.session_keys AS
SELECT station_id, assumeNotNull(transaction_id) AS transaction_id, session_id, start_time
FROM {database}.charging_sessions
WHERE sign = 1 AND transaction_id IS NOT NULL;

INSERT INTO {database}.session_keys
SELECT station_id, assumeNotNull(transaction_id), session_id, start_time
FROM {database}.charging_sessions FINAL
WHERE transaction_id IS NOT NULL;
