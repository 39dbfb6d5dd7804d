-- Planner statistics of a table that carries keyed messages, as a keyed
-- deployment's table has them after its first ANALYZE: 1,000 keys of ten
-- messages, nine delivered and one pending. Then the rows go: TRUNCATE
-- keeps a table's column statistics (and ANALYZE of an empty table changes
-- none), so the keyed run that follows starts empty, planned as for keys.
-- Without this a keyed run inherits whatever the run before it left, and
-- after an unkeyed one that says no message has a key (see the
-- stale-statistics variant of the keyed claim scenario).
INSERT INTO pgoutbox_message (lane, target, payload, ordering_key, status, available_at, attempt_count, max_attempts, created_at, updated_at)
SELECT @lane::text, @target::text, @payload::jsonb, 'key-' || lpad(k.n::text, 7, '0'),
       CASE WHEN m.n < 10 THEN 'delivered' ELSE 'pending' END, now(),
       CASE WHEN m.n < 10 THEN 1 ELSE 0 END, 5, now(), now()
FROM generate_series(1, 10) AS m(n), generate_series(0, 999) AS k(n)
ORDER BY m.n, k.n;
ANALYZE pgoutbox_message;
TRUNCATE pgoutbox_message;
