-- The growth scenario's history: delivered rows a day old.
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
SELECT @lane::text, @target::text, @payload::jsonb, 'delivered', now() - interval '1 day', 1, 5, now() - interval '1 day', now() - interval '1 day'
FROM generate_series(1, @rows::int);
