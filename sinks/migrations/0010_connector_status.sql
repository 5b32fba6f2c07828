-- Station health (issue 5): the connector status history and the station registry, so
-- reports can compute availability, MTBF and MTTR per station and per model/firmware
-- (charging/station_health.py states the formulas; README "Station health").

-- Every status a connector reported, as the processor applied it (`connector-status`
-- topic, charging/status.py). The sink inserts under its deduplication token, so a
-- retried batch is dropped; a processor replay republishes the same records at new
-- offsets, which ReplacingMergeTree merges away (the event id is in the key): read FINAL.
CREATE TABLE IF NOT EXISTS {database}.connector_status
(
    station_id   LowCardinality(String),
    connector_id UInt16,
    time         DateTime64(3, 'UTC'),
    event_id     String,
    status       LowCardinality(String),
    error_code   LowCardinality(Nullable(String)),
    event_time   DateTime64(3, 'UTC'),
    receive_time DateTime64(3, 'UTC'),
    _partition   Int32,
    _offset      Int64,
    inserted_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (station_id, connector_id, time, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Each status with the time the next one began (NULL: still the current status) and the
-- status before it ('' for a connector's first): the intervals availability is made of.
CREATE VIEW IF NOT EXISTS {database}.connector_status_intervals AS
SELECT station_id, connector_id, time AS start_time,
       leadInFrame(toNullable(time)) OVER w AS end_time,
       status, error_code,
       lagInFrame(status, 1, '') OVER w AS previous_status
FROM {database}.connector_status FINAL
WINDOW w AS (PARTITION BY station_id, connector_id ORDER BY time, event_id
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);

-- The station registry (processor.stations_file), loaded by the sink at start: reports
-- group by model and firmware. A reload replaces a station's row (latest loaded_at wins).
CREATE TABLE IF NOT EXISTS {database}.stations
(
    station_id    LowCardinality(String),
    model         LowCardinality(String),
    firmware      LowCardinality(String),
    connectors    UInt16,
    rated_power_w Map(UInt16, Float64),
    loaded_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY station_id;
