-- Running updates expire a day after they were written, not a day after their event time:
-- with the event-time TTL, a replayed or late log was dropped as soon as it was inserted,
-- and a live monitor showed nothing for it.
ALTER TABLE {database}.session_updates MODIFY TTL toDateTime(inserted_at) + INTERVAL 1 DAY;
