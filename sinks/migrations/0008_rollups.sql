-- Rollups, kept current by materialized views on charging_sessions. Every measure is
-- summed as `sign * x`, so a correction (cancel row -1 + new version +1, see 0004) moves a
-- rollup by its difference: rollups equal what FINAL over charging_sessions gives.
-- The sink inserts with deduplicate_blocks_in_dependent_materialized_views=1, so a
-- retried batch (same token) is dropped here too. Readers GROUP BY the key (parts merge
-- in the background): SELECT ... sum(sessions) ... GROUP BY station_id, day.

-- Per station per UTC day of the session's start.
CREATE TABLE IF NOT EXISTS {database}.station_daily
(
    day          Date,
    station_id   LowCardinality(String),
    currency     LowCardinality(String),
    sessions     SimpleAggregateFunction(sum, Int64),
    completed    SimpleAggregateFunction(sum, Int64),
    incomplete   SimpleAggregateFunction(sum, Int64),
    failed       SimpleAggregateFunction(sum, Int64),
    zero_energy  SimpleAggregateFunction(sum, Int64),
    energy_wh    SimpleAggregateFunction(sum, Float64),
    revenue      SimpleAggregateFunction(sum, Decimal(38, 4)),
    plugged_ms   SimpleAggregateFunction(sum, Int64),
    charging_ms  SimpleAggregateFunction(sum, Int64),
    connectors   SimpleAggregateFunction(groupUniqArrayArray, Array(UInt16)),
    max_power_w  SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (station_id, day, currency)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.station_daily_mv TO {database}.station_daily AS
SELECT toDate(start, 'UTC') AS day, station_id, currency,
       sum(toInt64(sign)) AS sessions,
       sum(sign * (state = 'completed')) AS completed,
       sum(sign * (state = 'incomplete')) AS incomplete,
       sum(sign * (state = 'incomplete' OR ifNull(reason, '') IN (
           'EmergencyStop', 'PowerLoss', 'HardReset', 'SoftReset', 'Reboot', 'ImmediateReset',
           'GroundFault', 'OvercurrentFault', 'PowerQuality', 'Timeout'))) AS failed,
       sum(sign * (wh <= 0)) AS zero_energy,
       sum(sign * wh) AS energy_wh,
       sum(toDecimal128(sign, 0) * money) AS revenue,
       sum(sign * plugged) AS plugged_ms,
       sum(sign * charging) AS charging_ms,
       groupUniqArrayIf(connector_id, sign = 1) AS connectors,
       maxIf(peak_w, sign = 1) AS max_power_w
FROM
(
    SELECT start_time AS start, station_id, currency, sign, state, stop_reason AS reason,
           energy_wh AS wh, cost AS money, toInt64(plugged_ms) AS plugged,
           toInt64(charging_ms) AS charging, connector_id, max_power_w AS peak_w
    FROM {database}.charging_sessions
)
GROUP BY day, station_id, currency;

-- Per station per UTC hour: sessions started in the hour, plugged-in time overlapping the
-- hour (exact occupancy: plugged_ms / 3.6e6 = average connectors in use), and energy
-- spread evenly over the session's charging window [start, start + charging_ms].
CREATE TABLE IF NOT EXISTS {database}.hourly_load
(
    hour         DateTime('UTC'),
    station_id   LowCardinality(String),
    started      SimpleAggregateFunction(sum, Int64),
    plugged_ms   SimpleAggregateFunction(sum, Int64),
    energy_wh    SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (station_id, hour)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.hourly_load_mv TO {database}.hourly_load AS
SELECT toDateTime(intDiv(h, 1000), 'UTC') AS hour, station_id,
       sum(sign * (h = s - s % 3600000)) AS started,
       sum(sign * greatest(0, least(e, h + 3600000) - greatest(s, h))) AS plugged_ms,
       sum(sign * if(c > s, wh * greatest(0, least(c, h + 3600000) - greatest(s, h)) / (c - s),
                     if(h = s - s % 3600000, wh, 0))) AS energy_wh
FROM
(
    SELECT station_id, sign, energy_wh AS wh,
           toInt64(toUnixTimestamp64Milli(start_time)) AS s,
           greatest(s, toInt64(toUnixTimestamp64Milli(end_time))) AS e,
           least(e, s + toInt64(charging_ms)) AS c,
           arrayJoin(range(s - s % 3600000, greatest(e, s + 1), 3600000)) AS h
    FROM {database}.charging_sessions
)
GROUP BY hour, station_id;

-- Per vehicle ('' = not identified) per UTC month of the session's start.
CREATE TABLE IF NOT EXISTS {database}.vehicle_monthly
(
    month        Date,
    vehicle_id   String,
    currency     LowCardinality(String),
    sessions     SimpleAggregateFunction(sum, Int64),
    energy_wh    SimpleAggregateFunction(sum, Float64),
    cost         SimpleAggregateFunction(sum, Decimal(38, 4)),
    plugged_ms   SimpleAggregateFunction(sum, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (month, vehicle_id, currency)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.vehicle_monthly_mv TO {database}.vehicle_monthly AS
SELECT toStartOfMonth(start, 'UTC') AS month, vehicle AS vehicle_id, currency,
       sum(toInt64(sign)) AS sessions,
       sum(sign * wh) AS energy_wh,
       sum(toDecimal128(sign, 0) * money) AS cost,
       sum(sign * plugged) AS plugged_ms
FROM
(
    SELECT start_time AS start, ifNull(vehicle_id, '') AS vehicle, currency, sign,
           energy_wh AS wh, cost AS money, toInt64(plugged_ms) AS plugged
    FROM {database}.charging_sessions
)
GROUP BY month, vehicle_id, currency;
