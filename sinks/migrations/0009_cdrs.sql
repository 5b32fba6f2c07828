-- Charge detail records (OCPI 2.2.1 CDRs, charging/cdr.py), written by the sessions sink
-- in the same flow as the session versions they bill. Why each choice:
-- * A CDR is never edited: a corrected session adds a credit CDR (negated amounts) and a
--   new CDR, so rows are only ever added. Ids are deterministic ({session_id}-v{version},
--   {id}-credit) and rows are built from the sessions alone: a replay writes identical
--   rows, which ReplacingMergeTree on cdr_id collapses (read with FINAL); a retried batch
--   is dropped outright by its deduplication token.
-- * ORDER BY (session_id, cdr_id): the replacing key is still the CDR (a cdr_id belongs
--   to one session), and the sink's per-batch lookup of the CDRs already issued for up to
--   a batch of sessions (`session_id IN (...)`) as well as `chargewatch cdr SESSION_ID`
--   are primary-key reads. (A bloom filter on session_id under ORDER BY cdr_id would pass
--   nearly every granule for an IN list of thousands of ids.) A bloom filter on cdr_id
--   serves the rarer lookup of one CDR by its id.
-- * Amounts are Decimal(18, 4) excl. and incl. VAT; an amount a CDR does not have (a
--   dimension nothing priced, or excl. VAT of a session published before it was carried)
--   is NULL. charging_periods is JSON (one object per period, see periods_json).
CREATE TABLE IF NOT EXISTS {database}.cdrs
(
    cdr_id               String,
    session_id           String,
    session_version      UInt32,
    issued_version       UInt32,
    credit               Bool,
    credit_reference_id  Nullable(String),
    station_id           LowCardinality(String),
    connector_id         UInt16,
    id_tag               Nullable(String) CODEC(ZSTD(1)),
    vehicle_id           Nullable(String) CODEC(ZSTD(1)),
    start_time           DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    end_time             DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    currency             LowCardinality(String),
    tariff_id            LowCardinality(Nullable(String)),
    total_cost_excl_vat  Nullable(Decimal(18, 4)),
    total_cost_incl_vat  Decimal(18, 4),
    fixed_cost_excl_vat  Nullable(Decimal(18, 4)),
    fixed_cost_incl_vat  Nullable(Decimal(18, 4)),
    total_energy_wh      Float64 CODEC(ZSTD(1)),
    energy_cost_excl_vat Nullable(Decimal(18, 4)),
    energy_cost_incl_vat Nullable(Decimal(18, 4)),
    total_time_ms        UInt64 CODEC(ZSTD(1)),
    time_cost_excl_vat   Nullable(Decimal(18, 4)),
    time_cost_incl_vat   Nullable(Decimal(18, 4)),
    total_parking_ms     UInt64 CODEC(ZSTD(1)),
    parking_cost_excl_vat Nullable(Decimal(18, 4)),
    parking_cost_incl_vat Nullable(Decimal(18, 4)),
    charging_periods     String CODEC(ZSTD(1)),
    last_updated         DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    inserted_at          DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(ZSTD(1)),
    INDEX cdr_idx cdr_id TYPE bloom_filter GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(start_time)
ORDER BY (session_id, cdr_id)
SETTINGS non_replicated_deduplication_window = 1000;
