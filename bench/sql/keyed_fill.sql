-- The keyed claim-latency scenario's table: @keys ordering keys (named as
-- benchkit.KeyName names them) of @per_key pending messages each, due now.
-- Rows are inserted message-major (the first message of every key, then the
-- second, ...), and the identity draws ids in insert order, so within each
-- key ids follow the key's message order, as keyed enqueues make them.
INSERT INTO pgoutbox_message (lane, target, payload, ordering_key, available_at, max_attempts, created_at, updated_at)
SELECT @lane::text, @target::text, @payload::jsonb, 'key-' || lpad(k.n::text, 7, '0'), now(), 5, now(), now()
FROM generate_series(1, @per_key::int) AS m(n), generate_series(0, @keys::int - 1) AS k(n)
ORDER BY m.n, k.n;
