-- Coalesced inserts (sinks/DESIGN.md): the ranges of several partitions of a topic go into
-- one insert; each range's intent records that insert's token, so a restarted sink knows
-- which ranges went in together ('' for a range inserted alone, every older row).
ALTER TABLE {database}.sink_batches ADD COLUMN IF NOT EXISTS insert_token String DEFAULT '';
