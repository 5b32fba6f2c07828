-- The sink's batch intents: before inserting offsets [first_offset, last_offset] of a
-- topic-partition, the sink records them here, so a restarted sink rebuilds exactly that
-- batch (same insert token) instead of a different one. See sinks/DESIGN.md.
-- Only the latest intent per partition matters; offsets only grow, so last_offset orders them.
CREATE TABLE IF NOT EXISTS {database}.sink_batches
(
    topic        LowCardinality(String),
    partition    Int32,
    first_offset Int64,
    last_offset  Int64,
    recorded_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(last_offset)
ORDER BY (topic, partition);
