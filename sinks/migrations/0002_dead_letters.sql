-- Everything any stage could not use, as read from the dead-letters topic.
-- Keyed by where the input came from: a dead letter published twice (a stage replayed
-- after a crash) collapses to one row under FINAL; the insert token drops retried batches.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    original         String,
    original_key     Nullable(String),
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    stage            LowCardinality(String),
    error            String,
    failed_at        DateTime64(3, 'UTC'),
    _partition       Int32,
    _offset          Int64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset, stage)
SETTINGS non_replicated_deduplication_window = 1000;
