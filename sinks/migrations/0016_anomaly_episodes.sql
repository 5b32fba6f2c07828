-- Anomaly episodes (charging/episodes.py): one anomaly ID per condition, published as it
-- opens, updates and closes. The table keeps the latest state of each episode: its records
-- are keyed by station, so they arrive in order on one partition and are inserted in offset
-- order, and ReplacingMergeTree (no version column) keeps the last row inserted under
-- FINAL. `detected_at` stays the time the episode was first seen (so every state of an
-- episode falls in the same monthly partition, where FINAL can replace it); `updated_at`
-- is the time of the state stored (open: first seen; update: last seen; closed: closed).
ALTER TABLE {database}.anomalies
    ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'single' AFTER evidence,
    ADD COLUMN IF NOT EXISTS occurrences UInt32 DEFAULT 1 AFTER status,
    ADD COLUMN IF NOT EXISTS last_at Nullable(DateTime64(3, 'UTC')) AFTER occurrences,
    ADD COLUMN IF NOT EXISTS updated_at DateTime64(3, 'UTC') DEFAULT detected_at AFTER last_at;
