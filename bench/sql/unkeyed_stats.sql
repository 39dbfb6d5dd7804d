-- Planner statistics from before any ordering key: a live unkeyed outbox
-- of 10,000 messages, six in ten delivered and the rest pending, analyzed,
-- then gone (TRUNCATE keeps a table's column statistics). A service that
-- turns ordering keys on runs with these until its table's next ANALYZE:
-- pending messages exist, none has a key.
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
SELECT @lane::text, @target::text, @payload::jsonb,
       CASE WHEN g % 10 < 6 THEN 'delivered' ELSE 'pending' END, now(),
       CASE WHEN g % 10 < 6 THEN 1 ELSE 0 END, 5, now(), now()
FROM generate_series(1, 10000) AS g;
ANALYZE pgoutbox_message;
TRUNCATE pgoutbox_message;
