-- The baseline of Enqueue: the same row written by a bare INSERT, without
-- the library (validation, dedupe, notify). Positional parameters: scope,
-- lane, target, payload.
INSERT INTO pgoutbox_message (scope, lane, target, payload, available_at, max_attempts, created_at, updated_at)
VALUES ($1, $2, $3, $4, now(), 5, now(), now());
