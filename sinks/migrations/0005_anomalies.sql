-- What the detectors flagged for on-call (schemas/records.py Anomaly). Anomaly IDs are
-- deterministic, so one anomaly published twice is one row under FINAL; an anomaly's ID
-- fixes its station and kind, so they can lead the key for "top anomalies" by station/kind.
CREATE TABLE IF NOT EXISTS {database}.anomalies
(
    anomaly_id   String,
    kind         LowCardinality(String),
    severity     LowCardinality(String),
    station_id   LowCardinality(String),
    connector_id Nullable(UInt16),
    session_id   Nullable(String),
    detected_at  DateTime64(3, 'UTC'),
    message      String CODEC(ZSTD(1)),
    evidence     Map(String, String) CODEC(ZSTD(1)),
    _partition   Int32,
    _offset      Int64,
    inserted_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(detected_at)
ORDER BY (station_id, kind, anomaly_id)
SETTINGS non_replicated_deduplication_window = 1000;
