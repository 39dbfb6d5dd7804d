-- The first release's statement, as its sqlc code sent it (release 1,
-- before migration 2): the online-migration test runs it as a relay of that
-- release would, while the table migrates.
-- name: MessageClaim :many
WITH clock AS (
    SELECT coalesce($1::timestamptz, now()) AS now,
           coalesce($1::timestamptz, now())
               + $2::bigint * interval '1 microsecond' AS lease_until
),
expired AS (
    SELECT m.id AS candidate_id,
           m.available_at AS candidate_available_at,
           (m.attempt_count >= m.max_attempts) AS exhausted
    FROM pgoutbox_message m
    WHERE m.scope = $3::text
      AND m.lane = $4::text
      AND m.target = $5::text
      AND m.status = 'claimed'
      AND m.lease_expires_at <= (SELECT k.now FROM clock k)
    ORDER BY m.available_at, m.id
    LIMIT $6::integer
    FOR UPDATE SKIP LOCKED
),
due AS (
    SELECT m.id AS candidate_id,
           m.available_at AS candidate_available_at
    FROM pgoutbox_message m
    WHERE m.scope = $3::text
      AND m.lane = $4::text
      AND m.target = $5::text
      AND m.status = 'pending'
      AND m.available_at <= (SELECT k.now FROM clock k)
      -- The claimer's cursor: the last (available_at, id) it took from a
      -- backlog. Claimed rows leave dead entries at the head of the due
      -- index until VACUUM; starting past them keeps a long drain from
      -- rereading them on every claim. The start of time scans everything.
      AND (m.available_at, m.id) > ($7::timestamptz, $8::bigint)
    ORDER BY m.available_at, m.id
    LIMIT $6::integer
    FOR UPDATE SKIP LOCKED
),
picked AS (
    SELECT c.candidate_id
    FROM (
        SELECT e.candidate_id, e.candidate_available_at FROM expired e WHERE NOT e.exhausted
        UNION ALL
        SELECT d.candidate_id, d.candidate_available_at FROM due d
    ) c
    ORDER BY c.candidate_available_at, c.candidate_id
    LIMIT $6::integer
),
dead_lettered AS (
    UPDATE pgoutbox_message m
    SET status = 'dead_letter',
        last_error = 'lease expired after ' || m.attempt_count || ' attempts',
        claimed_by = NULL,
        claim_token = NULL,
        lease_expires_at = NULL,
        updated_at = k.now
    FROM expired e, clock k
    WHERE m.id = e.candidate_id
      AND e.exhausted
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by, m.claim_token, m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at
),
acked AS (
    UPDATE pgoutbox_message m
    SET status = 'delivered',
        claimed_by = NULL,
        claim_token = NULL,
        lease_expires_at = NULL,
        updated_at = k.now
    FROM clock k
    WHERE m.id = ANY($9::bigint[])
      AND m.claim_token = ($10::uuid[])[array_position($9::bigint[], m.id)]
      AND m.scope = $3::text
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by, m.claim_token, m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at
),
claimed AS (
    UPDATE pgoutbox_message m
    SET status = 'claimed',
        attempt_count = m.attempt_count + 1,
        claimed_by = $11::text,
        claim_token = gen_random_uuid(),
        lease_expires_at = k.lease_until,
        updated_at = k.now
    FROM picked p, clock k
    WHERE m.id = p.candidate_id
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by, m.claim_token, m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at
)
SELECT id, scope, lane, target, payload, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at
FROM claimed
UNION ALL
SELECT id, scope, lane, target, payload, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at
FROM dead_lettered
UNION ALL
SELECT id, scope, lane, target, 'null'::jsonb, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at
FROM acked
ORDER BY status, available_at, id
