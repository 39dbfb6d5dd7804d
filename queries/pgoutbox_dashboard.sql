-- Read-only statements of the operator dashboard (package dashboard). None of
-- them runs on the claim, ack or nack path, and none writes.

-- name: DashboardScopes :many
-- The scopes that hold pending, claimed or dead messages, found with a loose
-- index scan: one probe per distinct scope into each partial index (scope is
-- every index's first column), so the cost follows the number of scopes,
-- never the number of rows. Scopes that hold only delivered history are not
-- listed: they have nothing to show but history. This is the one statement
-- that reads across scopes, as listing them is its purpose; @max bounds it.
WITH RECURSIVE pending_scopes AS (
    (SELECT p.scope FROM pgoutbox_message p WHERE p.status = 'pending' AND p.ordering_key IS NULL ORDER BY p.scope LIMIT 1)
    UNION ALL
    SELECT (SELECT p2.scope FROM pgoutbox_message p2
            WHERE p2.status = 'pending' AND p2.ordering_key IS NULL AND p2.scope > s.scope ORDER BY p2.scope LIMIT 1)
    FROM pending_scopes s
    WHERE s.scope IS NOT NULL
),
keyed_scopes AS (
    (SELECT p.scope FROM pgoutbox_message p
     WHERE pgoutbox_holds_ordering_key(p.status, p.ordering_key, p.ordering_key_released)
     ORDER BY p.scope LIMIT 1)
    UNION ALL
    SELECT (SELECT p2.scope FROM pgoutbox_message p2
            WHERE pgoutbox_holds_ordering_key(p2.status, p2.ordering_key, p2.ordering_key_released)
              AND p2.scope > s.scope ORDER BY p2.scope LIMIT 1)
    FROM keyed_scopes s
    WHERE s.scope IS NOT NULL
),
claimed_scopes AS (
    (SELECT c.scope FROM pgoutbox_message c WHERE c.status = 'claimed' ORDER BY c.scope LIMIT 1)
    UNION ALL
    SELECT (SELECT c2.scope FROM pgoutbox_message c2
            WHERE c2.status = 'claimed' AND c2.scope > s.scope ORDER BY c2.scope LIMIT 1)
    FROM claimed_scopes s
    WHERE s.scope IS NOT NULL
),
dead_scopes AS (
    (SELECT d.scope FROM pgoutbox_message d WHERE d.status = 'dead_letter' ORDER BY d.scope LIMIT 1)
    UNION ALL
    SELECT (SELECT d2.scope FROM pgoutbox_message d2
            WHERE d2.status = 'dead_letter' AND d2.scope > s.scope ORDER BY d2.scope LIMIT 1)
    FROM dead_scopes s
    WHERE s.scope IS NOT NULL
),
found AS (
    SELECT a.scope FROM pending_scopes a WHERE a.scope IS NOT NULL
    UNION SELECT k.scope FROM keyed_scopes k WHERE k.scope IS NOT NULL
    UNION SELECT b.scope FROM claimed_scopes b WHERE b.scope IS NOT NULL
    UNION SELECT e.scope FROM dead_scopes e WHERE e.scope IS NOT NULL
)
SELECT f.scope::text AS scope
FROM found f
ORDER BY f.scope
LIMIT @max::integer;

-- name: DashboardMaxID :one
-- The newest message id (a single probe at the primary key's end): where the
-- sampler starts counting enqueued messages.
SELECT coalesce(max(id), 0)::bigint AS max_id FROM pgoutbox_message;

-- name: DashboardEnqueuedSince :many
-- Messages enqueued since the sampler's last look (id above @after_id), by
-- scope, lane and target, in every scope or in @scope only. A range scan of
-- the primary key over the new rows: its cost follows the enqueue rate, not
-- the table's history. The sampler derives deliveries from it (see
-- dashboard/sampler.go), so nothing is written on the ack path.
SELECT m.scope, m.lane, m.target,
       count(*)::bigint AS enqueued,
       max(m.id)::bigint AS max_id
FROM pgoutbox_message m
WHERE m.id > @after_id::bigint
  AND (sqlc.narg('scope')::text IS NULL OR m.scope = sqlc.narg('scope')::text)
GROUP BY m.scope, m.lane, m.target;

-- name: DashboardDeadLetterGroups :many
-- The scope's dead letters grouped by lane, target and last error, largest
-- group first, for the dead-letter page. Reads the dead-letter partial index
-- (and each dead row once for its error): dead letters are few by nature.
SELECT d.lane, d.target,
       coalesce(d.last_error, '')::text AS last_error,
       count(*)::bigint AS messages,
       min(d.id)::bigint AS first_id,
       min(d.updated_at)::timestamptz AS first_at,
       max(d.updated_at)::timestamptz AS last_at
FROM pgoutbox_message d
WHERE d.scope = @scope::text
  AND d.status = 'dead_letter'
  AND (sqlc.narg('lane')::text IS NULL OR d.lane = sqlc.narg('lane')::text)
  AND (sqlc.narg('target')::text IS NULL OR d.target = sqlc.narg('target')::text)
GROUP BY d.lane, d.target, d.last_error
ORDER BY count(*) DESC, d.lane, d.target, min(d.id)
LIMIT @max::integer;
