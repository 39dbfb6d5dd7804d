-- name: MessageInsert :one
-- Enqueue without a dedupe key: a plain insert, nothing can conflict.
--
-- A keyed message (@ordering_key set) is inserted under a transaction-scoped
-- advisory lock on its key (@lock_ids, see internal/keylock), taken before
-- its id is drawn: a second producer of the key waits until the first
-- commits or rolls back, so within a key ids are drawn in commit order and a
-- claim never sees a later message of a key while an earlier one may still
-- commit. The lock CTE is scanned before the row is formed (the identity
-- default is evaluated above it), so the lock is held before the id exists.
-- Unkeyed messages pass no lock ids and take no lock.
--
-- With a @notify_payload the statement also signals relays LISTENing on
-- @notify_channel (the store decides when to notify and what the payload
-- says; see internal/wakeup). Postgres delivers the notification at commit,
-- and only then, so a relay never wakes for a message it cannot yet see.
-- xact is the transaction's id: for an enqueue in a caller's transaction
-- the store notifies once it sees that transaction commit (see
-- outbox/commitwatch.go).
--
-- Only what the server makes comes back: the id, the times, and the payload
-- as jsonb keeps it (key order and whitespace are its own). The store fills
-- in the rest of the message from the draft; scanning all twenty columns of
-- a row it has just written cost a producer more than the insert.
WITH locked AS (
    SELECT count(pg_advisory_xact_lock(k.lock_id)) AS n
    FROM unnest(@lock_ids::bigint[]) AS k(lock_id)
),
inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, ordering_key, headers, available_at, requested_available_at,
        max_attempts, created_at, updated_at
    )
    SELECT @scope::text,
           @lane::text,
           @target::text,
           @payload::jsonb,
           sqlc.narg('ordering_key')::text,
           sqlc.narg('headers')::jsonb,
           coalesce(sqlc.narg('available_at')::timestamptz, sqlc.narg('now')::timestamptz, statement_timestamp()),
           sqlc.narg('available_at')::timestamptz,
           @max_attempts::integer,
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()),
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
    FROM locked l
    WHERE l.n >= 0
    RETURNING id, payload, available_at, created_at
)
SELECT i.id, i.payload::text AS payload, i.available_at, i.created_at,
       pg_current_xact_id()::text::bigint AS xact,
       CASE WHEN @notify_payload::text <> ''
            THEN pg_notify(@notify_channel::text, @notify_payload::text) IS NOT NULL
            ELSE false
       END AS notified
FROM inserted AS i;

-- name: MessageInsertDeduplicated :one
-- Enqueue with a dedupe key. ON CONFLICT DO NOTHING instead of letting the
-- unique index raise: a unique violation would abort the caller's transaction,
-- and a duplicate is an expected outcome, not an error. No row back means the
-- key is taken (and nothing is notified); the caller then reads the holder
-- with MessageGetByDedupeKey. A concurrent insert of the same key waits here
-- for the other transaction and then either inserts (the other rolled back)
-- or returns nothing. Keyed messages lock their ordering key first, as in
-- MessageInsert; a deduplicated enqueue adds nothing to the key.
WITH locked AS (
    SELECT count(pg_advisory_xact_lock(k.lock_id)) AS n
    FROM unnest(@lock_ids::bigint[]) AS k(lock_id)
),
inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, dedupe_key, ordering_key, headers, available_at, requested_available_at,
        max_attempts, created_at, updated_at
    )
    SELECT @scope::text,
           @lane::text,
           @target::text,
           @payload::jsonb,
           @dedupe_key::text,
           sqlc.narg('ordering_key')::text,
           sqlc.narg('headers')::jsonb,
           coalesce(sqlc.narg('available_at')::timestamptz, sqlc.narg('now')::timestamptz, statement_timestamp()),
           sqlc.narg('available_at')::timestamptz,
           @max_attempts::integer,
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()),
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
    FROM locked l
    WHERE l.n >= 0
    ON CONFLICT (scope, lane, target, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id, payload, available_at, created_at
)
SELECT i.id, i.payload::text AS payload, i.available_at, i.created_at,
       pg_current_xact_id()::text::bigint AS xact,
       CASE WHEN @notify_payload::text <> ''
            THEN pg_notify(@notify_channel::text, @notify_payload::text) IS NOT NULL
            ELSE false
       END AS notified
FROM inserted AS i;

-- name: MessageInsertMany :many
-- Enqueue a batch without dedupe keys in one statement: one array per
-- column, unnested in input order. Rows are inserted, and their ids drawn,
-- in @ordinal order, so the rows that come back sorted by id line up with
-- the drafts. '' in @dedupe_keys and @ordering_keys means no key, a NULL in
-- @headers none; @has_available_at false means now. Only what the server
-- makes comes back (the id, the times and the payload as jsonb keeps it),
-- with what lines a row up with its draft; the store fills in the rest from
-- the drafts.
--
-- Nothing can conflict, so there is no ON CONFLICT clause: with one, every
-- row would go through speculative insertion (an arbiter-index probe and
-- one more WAL record per message) for a key no row carries.
-- MessageInsertManyDeduplicated is this statement with the clause, and a
-- test (outbox/statements_test.go) keeps the two otherwise the same.
--
-- Before inserting, the statement takes transaction-scoped advisory locks on
-- @lock_ids: the batch's ordering keys (see MessageInsert), ascending (see
-- internal/keylock). The CTE is scanned before the first row is formed, so
-- every lock is held before any id is drawn.
WITH locked AS (
    SELECT count(pg_advisory_xact_lock(k.lock_id)) AS n
    FROM unnest(@lock_ids::bigint[]) AS k(lock_id)
),
inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, dedupe_key, ordering_key, headers, available_at, requested_available_at,
        max_attempts, created_at, updated_at
    )
    SELECT @scope::text,
           d.lane,
           d.target,
           d.payload,
           nullif(d.dedupe_key, ''),
           nullif(d.ordering_key, ''),
           d.headers,
           CASE WHEN d.has_available_at THEN d.available_at
                ELSE coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
           END,
           CASE WHEN d.has_available_at THEN d.available_at END,
           d.max_attempts,
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()),
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
    FROM (
        -- Set-returning functions in one select list advance in lockstep.
        SELECT unnest(@lanes::text[]) AS lane,
               unnest(@targets::text[]) AS target,
               unnest(@payloads::jsonb[]) AS payload,
               unnest(@dedupe_keys::text[]) AS dedupe_key,
               unnest(@ordering_keys::text[]) AS ordering_key,
               unnest(@headers::jsonb[]) AS headers,
               unnest(@available_ats::timestamptz[]) AS available_at,
               unnest(@has_available_at::boolean[]) AS has_available_at,
               unnest(@max_attempts::integer[]) AS max_attempts,
               generate_subscripts(@lanes::text[], 1) AS ordinal
    ) d
    CROSS JOIN locked l
    WHERE l.n >= 0
    ORDER BY d.ordinal
    RETURNING id, lane, target, dedupe_key, payload, available_at, created_at
)
SELECT i.id, i.lane, i.target, i.dedupe_key, i.payload::text AS payload, i.available_at, i.created_at,
       pg_current_xact_id()::text::bigint AS xact,
       n.notified::bigint AS notified
FROM inserted AS i
-- One notification per payload the caller passed (one per distinct scope,
-- lane and target it wants to wake), sent once, and only when the statement
-- inserted something: a fully deduplicated batch notifies nobody.
CROSS JOIN (
    SELECT count(*) FILTER (WHERE pg_notify(@notify_channel::text, p.payload) IS NOT NULL) AS notified
    FROM unnest(@notify_payloads::text[]) AS p(payload)
    WHERE EXISTS (SELECT 1 FROM inserted)
) n
ORDER BY i.id;

-- name: MessageInsertManyDeduplicated :many
-- MessageInsertMany for a batch with dedupe keys. Keys already taken (or
-- repeated in the batch) insert nothing; the caller reads their holders
-- with MessageGetByDedupeKeys.
--
-- @lock_ids also holds the batch's dedupe keys, in the same ascending order
-- (see internal/keylock). Two batches that share dedupe keys in another
-- order would otherwise each insert some keys and wait on the other's
-- uncommitted rows for the rest: a deadlock. Taken in one global order, the
-- second batch waits for the first to commit before inserting anything, then
-- finds its keys held.
WITH locked AS (
    SELECT count(pg_advisory_xact_lock(k.lock_id)) AS n
    FROM unnest(@lock_ids::bigint[]) AS k(lock_id)
),
inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, dedupe_key, ordering_key, headers, available_at, requested_available_at,
        max_attempts, created_at, updated_at
    )
    SELECT @scope::text,
           d.lane,
           d.target,
           d.payload,
           nullif(d.dedupe_key, ''),
           nullif(d.ordering_key, ''),
           d.headers,
           CASE WHEN d.has_available_at THEN d.available_at
                ELSE coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
           END,
           CASE WHEN d.has_available_at THEN d.available_at END,
           d.max_attempts,
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()),
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
    FROM (
        -- Set-returning functions in one select list advance in lockstep.
        SELECT unnest(@lanes::text[]) AS lane,
               unnest(@targets::text[]) AS target,
               unnest(@payloads::jsonb[]) AS payload,
               unnest(@dedupe_keys::text[]) AS dedupe_key,
               unnest(@ordering_keys::text[]) AS ordering_key,
               unnest(@headers::jsonb[]) AS headers,
               unnest(@available_ats::timestamptz[]) AS available_at,
               unnest(@has_available_at::boolean[]) AS has_available_at,
               unnest(@max_attempts::integer[]) AS max_attempts,
               generate_subscripts(@lanes::text[], 1) AS ordinal
    ) d
    CROSS JOIN locked l
    WHERE l.n >= 0
    ORDER BY d.ordinal
    ON CONFLICT (scope, lane, target, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id, lane, target, dedupe_key, payload, available_at, created_at
)
SELECT i.id, i.lane, i.target, i.dedupe_key, i.payload::text AS payload, i.available_at, i.created_at,
       pg_current_xact_id()::text::bigint AS xact,
       n.notified::bigint AS notified
FROM inserted AS i
-- One notification per payload the caller passed (one per distinct scope,
-- lane and target it wants to wake), sent once, and only when the statement
-- inserted something: a fully deduplicated batch notifies nobody.
CROSS JOIN (
    SELECT count(*) FILTER (WHERE pg_notify(@notify_channel::text, p.payload) IS NOT NULL) AS notified
    FROM unnest(@notify_payloads::text[]) AS p(payload)
    WHERE EXISTS (SELECT 1 FROM inserted)
) n
ORDER BY i.id;

-- name: MessageGetByDedupeKeys :many
-- The holders of a batch's dedupe keys, with whether each one's payload is the
-- same JSON value as the draft's (see MessageGetByDedupeKey). @ordinal says
-- which draft (1-based) a row answers.
SELECT sqlc.embed(pgoutbox_message),
       (pgoutbox_message.payload = k.payload)::boolean AS payload_matches,
       k.ordinal::bigint AS ordinal
FROM (
    SELECT unnest(@lanes::text[]) AS lane,
           unnest(@targets::text[]) AS target,
           unnest(@dedupe_keys::text[]) AS dedupe_key,
           unnest(@payloads::jsonb[]) AS payload,
           generate_subscripts(@lanes::text[], 1) AS ordinal
) k
JOIN pgoutbox_message
  ON pgoutbox_message.scope = @scope::text
 AND pgoutbox_message.lane = k.lane
 AND pgoutbox_message.target = k.target
 AND pgoutbox_message.dedupe_key = k.dedupe_key;

-- name: MessageGetByDedupeKey :one
-- The message holding a dedupe key, and whether its payload is the same JSON
-- value as the one offered again (jsonb equality ignores key order and
-- whitespace, as a retrying producer's serializer may differ).
SELECT sqlc.embed(pgoutbox_message), (payload = @payload::jsonb)::boolean AS payload_matches
FROM pgoutbox_message
WHERE scope = @scope::text
  AND lane = @lane::text
  AND target = @target::text
  AND dedupe_key = @dedupe_key::text;

-- name: MessageGet :one
SELECT *
FROM pgoutbox_message
WHERE id = @id::bigint
  AND scope = @scope::text;

-- name: MessageClaim :many
-- Claims up to @max messages of one (scope, lane, target) in one statement.
--
-- Candidates come from three places, each locking with SKIP LOCKED so that
-- concurrent claimers pass over each other's rows instead of queueing:
--   expired: claimed rows whose lease ran out (their consumer died or
--            stalled), keyed or not: an expired head is handed out again;
--   due:     pending unkeyed rows whose time has come, oldest first;
--   keyed:   the head of each ordering key, when it is pending and due.
-- Expired and due are ordered by (available_at, id); all three are merged
-- and the oldest @max taken. An expired row that has used all its attempts
-- is a poison message: it is dead-lettered here, in the same statement, and
-- never handed out again (a keyed one keeps holding its key as a dead letter
-- unless @release_keys).
--
-- The head of an ordering key is its lowest-id message that still holds the
-- key: pending, claimed, or a dead letter not released. So at most one
-- message of a key is claimed at a time, in enqueue (id) order, and a nacked
-- head (pending again, maybe not yet due), a claimed head or a dead head
-- blocks only its own key. Heads are found by a loose index scan of
-- pgoutbox_message_key_idx (key, then id): each step reads the first entry
-- of the next key, never the messages queued behind a head, so a claim costs
-- the keys it visits, not the depth of any key. The walk starts after
-- @after_key (the claimer's last key: keys are served round robin, so a hot
-- key cannot starve the others) and wraps around; it stops once it has found
-- @max claimable heads, or has visited every key.
--
-- Each branch may lock up to @max rows; rows locked but not picked stay
-- unchanged and are released when the statement's transaction ends. In the
-- steady state the expired branch is empty and costs one index probe.
--
-- The same statement acks the claimer's previous successes (@ack_ids with
-- @ack_tokens at the same positions, matched and fenced as in
-- MessageAckMany): a relay that keeps up pays one statement and one commit
-- per batch instead of two. A row being acked here is never also a claim
-- candidate (the expired branch leaves out what the acked branch takes):
-- two branches of one statement cannot both update a row (only one update
-- would survive), and a holder whose lease ran out may still ack while
-- nobody has claimed the message since. The claim branches almost never
-- wait, but SKIP LOCKED does not promise it: when a candidate's updater commits at the instant the claim
-- locks it, PostgreSQL follows the row's update chain and waits for the next
-- version's locker, which can close a cycle with another claimer. The loser
-- gets a deadlock error with nothing done; the store runs the statement
-- again.
--
-- The clock is read once, in a CTE, so every row of one claim carries the same
-- timestamps. The result holds the claimed rows (status 'claimed'), then the
-- rows dead-lettered on the way (status 'dead_letter'), then the acked rows
-- (status 'delivered'). skipped is, on a row the key walk took, how many
-- heads that looked claimable the walk had passed, held by other claimers,
-- before it reached the row, and -1 on every other row (an expired keyed
-- head taken again was not found by the walk).
WITH RECURSIVE clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()) AS now,
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
               + sqlc.arg('lease_micros')::bigint * interval '1 microsecond' AS lease_until
),
expired AS (
    SELECT m.id AS candidate_id,
           m.available_at AS candidate_available_at,
           (m.attempt_count >= m.max_attempts) AS exhausted
    FROM pgoutbox_message m
    WHERE m.scope = @scope::text
      AND m.lane = @lane::text
      AND m.target = @target::text
      AND m.status = 'claimed'
      AND m.lease_expires_at <= (SELECT k.now FROM clock k)
      -- Not acked by this statement: acked's condition, NULL-safe.
      AND NOT coalesce(m.id = ANY(@ack_ids::bigint[])
                       AND m.claim_token = ANY(@ack_tokens::uuid[])
                       AND ((@ack_ids::bigint[])[array_position(@ack_tokens::uuid[], m.claim_token)] = m.id
                                OR EXISTS (SELECT 1 FROM (SELECT unnest(@ack_ids::bigint[]) AS id, unnest(@ack_tokens::uuid[]) AS token) p
                                           WHERE p.id = m.id AND p.token = m.claim_token)), false)
    ORDER BY m.available_at, m.id
    LIMIT @max::integer
    FOR UPDATE SKIP LOCKED
),
due AS (
    SELECT m.id AS candidate_id,
           m.available_at AS candidate_available_at
    FROM pgoutbox_message m
    WHERE m.scope = @scope::text
      AND m.lane = @lane::text
      AND m.target = @target::text
      AND m.status = 'pending'
      AND m.ordering_key IS NULL
      AND m.available_at <= (SELECT k.now FROM clock k)
      -- The claimer's cursor: the last (available_at, id) it took from a
      -- backlog. Claimed rows leave dead entries at the head of the due
      -- index until VACUUM; starting past them keeps a long drain from
      -- rereading them on every claim. The start of time scans everything.
      AND (m.available_at, m.id) > (sqlc.arg('after_available_at')::timestamptz, sqlc.arg('after_id')::bigint)
    ORDER BY m.available_at, m.id
    LIMIT @max::integer
    FOR UPDATE SKIP LOCKED
),
-- Heads of the keys after @after_key, in key order.
heads_after (ordering_key, id, status, available_at) AS (
    (SELECT m.ordering_key, m.id, m.status, m.available_at
     FROM pgoutbox_message m
     WHERE m.scope = @scope::text
       AND m.lane = @lane::text
       AND m.target = @target::text
       AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
       AND m.ordering_key > @after_key::text
     ORDER BY m.ordering_key, m.id
     LIMIT 1)
    UNION ALL
    SELECT n.ordering_key, n.id, n.status, n.available_at
    FROM heads_after h
    CROSS JOIN LATERAL (
        SELECT m.ordering_key, m.id, m.status, m.available_at
        FROM pgoutbox_message m
        WHERE m.scope = @scope::text
          AND m.lane = @lane::text
          AND m.target = @target::text
          AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
          AND m.ordering_key > h.ordering_key
        ORDER BY m.ordering_key, m.id
        LIMIT 1
    ) n
),
-- Then, wrapping around, the heads of the keys up to @after_key.
heads_before (ordering_key, id, status, available_at) AS (
    (SELECT m.ordering_key, m.id, m.status, m.available_at
     FROM pgoutbox_message m
     WHERE m.scope = @scope::text
       AND m.lane = @lane::text
       AND m.target = @target::text
       AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
       AND m.ordering_key <= @after_key::text
     ORDER BY m.ordering_key, m.id
     LIMIT 1)
    UNION ALL
    SELECT n.ordering_key, n.id, n.status, n.available_at
    FROM heads_before h
    CROSS JOIN LATERAL (
        SELECT m.ordering_key, m.id, m.status, m.available_at
        FROM pgoutbox_message m
        WHERE m.scope = @scope::text
          AND m.lane = @lane::text
          AND m.target = @target::text
          AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
          AND m.ordering_key > h.ordering_key
          AND m.ordering_key <= @after_key::text
        ORDER BY m.ordering_key, m.id
        LIMIT 1
    ) n
),
-- The walk is read lazily: the second half runs only when the first found
-- fewer than @max heads to lock.
keyed AS (
    -- The walk runs only as far as the LIMIT pulls it, and a head another
    -- claimer holds locked yields no row, so the walk goes on to later
    -- keys: claimers that start at the same key still fill their batches.
    SELECT l.id AS candidate_id,
           l.available_at AS candidate_available_at,
           -- Heads the walk read as claimable but could not take (another
           -- claimer holds them) before this one: the store tells from it
           -- when its claimer walks behind another (outbox/cursor.go).
           c.visited - row_number() OVER () AS candidate_skipped
    FROM (
        SELECT w.id, row_number() OVER () AS visited
        FROM (
            SELECT h.id FROM heads_after h
            WHERE h.status = 'pending' AND h.available_at <= (SELECT k.now FROM clock k)
            UNION ALL
            SELECT h.id FROM heads_before h
            WHERE h.status = 'pending' AND h.available_at <= (SELECT k.now FROM clock k)
        ) w
    ) c
    CROSS JOIN LATERAL (
        SELECT m.id, m.available_at
        FROM pgoutbox_message m
        WHERE m.id = c.id
          -- Rechecked on the row's latest version once it is locked: a
          -- head claimed, or nacked to a later time, since the walk read it
          -- is not taken.
          AND m.status = 'pending'
          AND m.available_at <= (SELECT k.now FROM clock k)
        FOR UPDATE SKIP LOCKED
    ) l
    LIMIT @max::integer
),
picked AS (
    SELECT c.candidate_id, c.candidate_skipped
    FROM (
        SELECT e.candidate_id, e.candidate_available_at, NULL::bigint AS candidate_skipped
        FROM expired e WHERE NOT e.exhausted
        UNION ALL
        SELECT d.candidate_id, d.candidate_available_at, NULL::bigint FROM due d
        UNION ALL
        SELECT y.candidate_id, y.candidate_available_at, y.candidate_skipped FROM keyed y
    ) c
    ORDER BY c.candidate_available_at, c.candidate_id
    LIMIT @max::integer
),
dead_lettered AS (
    UPDATE pgoutbox_message m
    SET status = 'dead_letter',
        last_error = 'lease expired after ' || m.attempt_count || ' attempts',
        claimed_by = NULL,
        claim_token = NULL,
        lease_expires_at = NULL,
        ordering_key_released = @release_keys::boolean AND m.ordering_key IS NOT NULL,
        updated_at = k.now
    FROM expired e, clock k
    WHERE m.id = e.candidate_id
      AND e.exhausted
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by, m.claim_token, m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at, m.ordering_key, m.ordering_key_released,
              m.headers, m.requested_available_at
),
acked AS (
    UPDATE pgoutbox_message m
    SET status = 'delivered',
        claimed_by = NULL,
        claim_token = NULL,
        lease_expires_at = NULL,
        updated_at = k.now
    FROM clock k
    WHERE m.id = ANY(@ack_ids::bigint[])
      AND m.claim_token = ANY(@ack_tokens::uuid[])
      AND ((@ack_ids::bigint[])[array_position(@ack_tokens::uuid[], m.claim_token)] = m.id
               OR EXISTS (SELECT 1 FROM (SELECT unnest(@ack_ids::bigint[]) AS id, unnest(@ack_tokens::uuid[]) AS token) p
                          WHERE p.id = m.id AND p.token = m.claim_token))
      AND m.scope = @scope::text
    -- claim_token: the token the row was acked with (see MessageAckMany),
    -- so the caller knows which of its receipts held.
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by,
              (SELECT o.claim_token FROM pgoutbox_message o WHERE o.id = m.id)::uuid AS claim_token,
              m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at, m.ordering_key, m.ordering_key_released,
              m.headers, m.requested_available_at
),
claimed AS (
    UPDATE pgoutbox_message m
    SET status = 'claimed',
        attempt_count = m.attempt_count + 1,
        claimed_by = @consumer_id::text,
        claim_token = gen_random_uuid(),
        lease_expires_at = k.lease_until,
        updated_at = k.now
    FROM picked p, clock k
    WHERE m.id = p.candidate_id
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by, m.claim_token, m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at, m.ordering_key, m.ordering_key_released,
              m.headers, m.requested_available_at, coalesce(p.candidate_skipped, -1) AS skipped
)
SELECT id, scope, lane, target, payload, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at, ordering_key, ordering_key_released,
       headers, requested_available_at, skipped::bigint AS skipped
FROM claimed
UNION ALL
SELECT id, scope, lane, target, payload, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at, ordering_key, ordering_key_released,
       headers, requested_available_at, -1::bigint
FROM dead_lettered
UNION ALL
-- The claimer knows its acked messages: spare it their payloads and headers.
SELECT id, scope, lane, target, 'null'::jsonb, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at, ordering_key, ordering_key_released,
       NULL::jsonb, requested_available_at, -1::bigint
FROM acked
ORDER BY status, available_at, id;

-- name: MessageNextDue :one
-- How long, in microseconds on the store's clock, until the earliest pending
-- message of one (scope, lane, target) that is not yet due becomes due. An
-- idle relay sleeps until then instead of until its next poll: a NOTIFY
-- fires at commit, before a delayed message is due, and nothing else would
-- wake the relay at its due time. One probe of the unkeyed due index; no row
-- when nothing is scheduled. Keyed messages scheduled for later are not
-- looked at (finding the earliest would read every pending keyed message):
-- they are found by the relay's next poll.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()) AS now
)
SELECT (extract(epoch FROM (m.available_at - k.now)) * 1000000)::bigint AS micros
FROM pgoutbox_message m, clock k
WHERE m.scope = @scope::text
  AND m.lane = @lane::text
  AND m.target = @target::text
  AND m.status = 'pending'
  AND m.ordering_key IS NULL
  AND m.available_at > k.now
ORDER BY m.available_at
LIMIT 1;

-- name: MessageAck :execrows
-- Fenced by the claim token: only the current holder can complete a message.
-- A holder whose lease has expired still succeeds as long as nobody has
-- claimed the message since; the work is done, and acking spares a redelivery.
UPDATE pgoutbox_message
SET status = 'delivered',
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE id = @id::bigint
  AND scope = @scope::text
  AND status = 'claimed'
  AND claim_token = @claim_token::uuid;

-- name: MessageAckMany :many
-- Acks a batch of (id, token) pairs in one statement and returns the pairs
-- that were still held. Each pair is judged on its own: a stale and the
-- current token of one message in the same batch ack it once, with the
-- current one, and a token given with another message's id acks nothing.
-- Only claimed rows have a token (pgoutbox_message_claim_check), so the
-- token test stands for status = 'claimed' without letting the planner
-- prefer the lease index (which holds every claim since the last VACUUM)
-- over primary-key lookups.
--
-- No join: rows are found by id = ANY (an index probe per id) and kept when
-- their current token is in the batch and paired there with their id. A
-- token is drawn at random for each claim, so in a batch of honest receipts
-- array_position finds its pair at the token's first place; only when that
-- place names another id (a token given with the wrong id, then with its
-- own) does the row look through all the pairs. (Joining the rows to the unnested pairs instead ran, under a
-- generic plan, as a nested loop comparing every row with every pair: n
-- squared comparisons, which halved claim mode's throughput at batches of
-- 256.) The token returned is the one the row held, read from the
-- statement's snapshot: the acked row's own earlier version. (Should the
-- claim that drew a token commit while this statement runs, and the batch
-- hold that token and a stale one for the row, the stale one is returned:
-- only a token handed out before its claim committed can do that.) The
-- index scan of id = ANY visits ids in ascending order, so two relays
-- acking overlapping batches (possible only after lost claims) lock in the
-- same order and cannot deadlock.
UPDATE pgoutbox_message m
SET status = 'delivered',
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE m.id = ANY(@ids::bigint[])
  AND m.claim_token = ANY(@claim_tokens::uuid[])
  AND ((@ids::bigint[])[array_position(@claim_tokens::uuid[], m.claim_token)] = m.id
           OR EXISTS (SELECT 1 FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@claim_tokens::uuid[]) AS token) p
                      WHERE p.id = m.id AND p.token = m.claim_token))
  AND m.scope = @scope::text
RETURNING m.id, (SELECT o.claim_token FROM pgoutbox_message o WHERE o.id = m.id)::uuid AS claim_token;

-- name: MessageExtendLeases :many
-- Heartbeat: moves the lease of each held (id, token) pair to now + @lease
-- and returns the pairs still held. A holder whose lease already ran out may
-- extend it while nobody has claimed the message since. Matches and locks
-- like MessageAckMany.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()) AS now,
           coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
               + sqlc.arg('lease_micros')::bigint * interval '1 microsecond' AS lease_until
)
UPDATE pgoutbox_message m
SET lease_expires_at = k.lease_until,
    updated_at = k.now
FROM clock k
WHERE m.id = ANY(@ids::bigint[])
  AND m.claim_token = ANY(@claim_tokens::uuid[])
  AND ((@ids::bigint[])[array_position(@claim_tokens::uuid[], m.claim_token)] = m.id
           OR EXISTS (SELECT 1 FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@claim_tokens::uuid[]) AS token) p
                      WHERE p.id = m.id AND p.token = m.claim_token))
  AND m.scope = @scope::text
RETURNING m.id, m.claim_token::uuid AS claim_token;

-- name: MessageDeadLetter :execrows
-- A permanent failure: the holder dead-letters the message at once, whatever
-- attempts it has left. Fenced like MessageAck. A keyed dead letter keeps
-- holding its key (order is never broken silently) unless @release_keys.
UPDATE pgoutbox_message
SET status = 'dead_letter',
    last_error = @last_error::text,
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    ordering_key_released = @release_keys::boolean AND ordering_key IS NOT NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE id = @id::bigint
  AND scope = @scope::text
  AND status = 'claimed'
  AND claim_token = @claim_token::uuid;

-- name: MessageNack :one
-- Fenced like MessageAck. A message with attempts left returns to pending at
-- @retry_at, or @retry_after_micros after now (both NULL: now); one without
-- goes to dead_letter, keeping its available_at as a record of when it was
-- last due. A delay measured from the database's clock keeps backoff right
-- on hosts whose clocks are off. No row back means the claim was lost. A
-- keyed message stays the head of its key: pending until its retry time, or
-- a dead letter that holds the key unless @release_keys.
UPDATE pgoutbox_message
SET status = CASE WHEN attempt_count >= max_attempts THEN 'dead_letter' ELSE 'pending' END,
    ordering_key_released = attempt_count >= max_attempts AND @release_keys::boolean AND ordering_key IS NOT NULL,
    available_at = CASE
        WHEN attempt_count >= max_attempts THEN available_at
        ELSE coalesce(
            sqlc.narg('retry_at')::timestamptz,
            coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
                + coalesce(sqlc.narg('retry_after_micros')::bigint, 0) * interval '1 microsecond'
        )
    END,
    last_error = @last_error::text,
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE id = @id::bigint
  AND scope = @scope::text
  AND status = 'claimed'
  AND claim_token = @claim_token::uuid
RETURNING status;

-- name: MessageList :many
-- Operator listing: optional status, lane, target, ordering key, dedupe key
-- and error-text filters, keyset pagination by id (pass the last id of the previous page; 0
-- for the first), oldest first. The caller caps @max. It walks the primary
-- key, so it suits all statuses and delivered ones (the bulk of the table);
-- the store plans it per execution, so a dedupe key with its lane and target
-- uses the dedupe index. Pending, claimed and dead letters go through
-- MessageListLive instead.
SELECT *
FROM pgoutbox_message
WHERE scope = @scope::text
  AND (sqlc.narg('status')::text IS NULL OR status = sqlc.narg('status')::text)
  AND (sqlc.narg('lane')::text IS NULL OR lane = sqlc.narg('lane')::text)
  AND (sqlc.narg('target')::text IS NULL OR target = sqlc.narg('target')::text)
  AND (sqlc.narg('ordering_key')::text IS NULL OR ordering_key = sqlc.narg('ordering_key')::text)
  AND (sqlc.narg('dedupe_key')::text IS NULL OR dedupe_key = sqlc.narg('dedupe_key')::text)
  AND (@error_contains::text = '' OR strpos(last_error, @error_contains::text) > 0)
  AND id > @after_id::bigint
ORDER BY id
LIMIT @max::integer;

-- name: MessageListLive :many
-- MessageList for one of the statuses with a partial index (pending, claimed,
-- dead_letter). Live rows are usually the newest, so an id-ordered walk of
-- the primary key would read the whole delivered history before reaching
-- them (BENCHMARKS.md, "Figures behind design choices"). The
-- store plans it per execution, so the status is known and its partial
-- indexes serve the rows: unkeyed and keyed messages sit in different ones
-- (pending: pgoutbox_message_due_unkeyed_idx and pgoutbox_message_key_idx),
-- so each kind is read on its own and the two merged. `id + 0` keeps the
-- planner from walking the primary key for the order and sorts the top @max
-- ids of each kind instead; the page's rows are fetched by id afterwards.
-- The cost follows that status's rows, never the history.
SELECT m.*
FROM pgoutbox_message m
WHERE m.id IN (
    SELECT u.id
    FROM (
        (SELECT p.id
         FROM pgoutbox_message p
         WHERE p.scope = @scope::text
           AND p.status = @status::text
           AND p.ordering_key IS NULL
           AND sqlc.narg('ordering_key')::text IS NULL
           AND (sqlc.narg('lane')::text IS NULL OR p.lane = sqlc.narg('lane')::text)
           AND (sqlc.narg('target')::text IS NULL OR p.target = sqlc.narg('target')::text)
           AND (sqlc.narg('dedupe_key')::text IS NULL OR p.dedupe_key = sqlc.narg('dedupe_key')::text)
           AND (@error_contains::text = '' OR strpos(p.last_error, @error_contains::text) > 0)
           AND p.id > @after_id::bigint
         ORDER BY p.id + 0
         LIMIT @max::integer)
        UNION ALL
        (SELECT p.id
         FROM pgoutbox_message p
         WHERE p.scope = @scope::text
           AND p.status = @status::text
           AND pgoutbox_holds_ordering_key(p.status, p.ordering_key, p.ordering_key_released)
           AND (sqlc.narg('ordering_key')::text IS NULL OR p.ordering_key = sqlc.narg('ordering_key')::text)
           AND (sqlc.narg('lane')::text IS NULL OR p.lane = sqlc.narg('lane')::text)
           AND (sqlc.narg('target')::text IS NULL OR p.target = sqlc.narg('target')::text)
           AND (sqlc.narg('dedupe_key')::text IS NULL OR p.dedupe_key = sqlc.narg('dedupe_key')::text)
           AND (@error_contains::text = '' OR strpos(p.last_error, @error_contains::text) > 0)
           AND p.id > @after_id::bigint
         ORDER BY p.id + 0
         LIMIT @max::integer)
        UNION ALL
        -- Released keyed dead letters are in neither index of keys.
        (SELECT p.id
         FROM pgoutbox_message p
         WHERE p.scope = @scope::text
           AND p.status = @status::text
           AND p.status = 'dead_letter'
           AND p.ordering_key_released
           AND (sqlc.narg('ordering_key')::text IS NULL OR p.ordering_key = sqlc.narg('ordering_key')::text)
           AND (sqlc.narg('lane')::text IS NULL OR p.lane = sqlc.narg('lane')::text)
           AND (sqlc.narg('target')::text IS NULL OR p.target = sqlc.narg('target')::text)
           AND (sqlc.narg('dedupe_key')::text IS NULL OR p.dedupe_key = sqlc.narg('dedupe_key')::text)
           AND (@error_contains::text = '' OR strpos(p.last_error, @error_contains::text) > 0)
           AND p.id > @after_id::bigint
         ORDER BY p.id + 0
         LIMIT @max::integer)
    ) u
    ORDER BY u.id
    LIMIT @max::integer
)
  AND m.status = @status::text
ORDER BY m.id;

-- name: MessageRedriveByIDs :many
-- Sends dead letters back to pending with a fresh set of attempts, due now.
-- Ids that are not dead letters of this scope are left alone; the caller
-- compares the ids returned with the ids asked for. last_error stays as the
-- record of why the message died. A keyed dead letter becomes the head of
-- its key again (if it was released, it goes back to its place in the key,
-- ahead of the key's later messages still waiting).
UPDATE pgoutbox_message
SET status = 'pending',
    attempt_count = 0,
    ordering_key_released = false,
    available_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE id = ANY(@ids::bigint[])
  AND scope = @scope::text
  AND status = 'dead_letter'
RETURNING id;

-- name: MessageRedriveByLaneTarget :many
-- Redrives up to @max dead letters of one lane and target (optionally only
-- those whose last error contains @error_contains) in one statement; the
-- caller repeats until a batch comes back short, so no statement locks more
-- than @max rows. The dead-letter index serves the selection.
UPDATE pgoutbox_message m
SET status = 'pending',
    attempt_count = 0,
    ordering_key_released = false,
    available_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE m.id IN (
    SELECT d.id
    FROM pgoutbox_message d
    WHERE d.scope = @scope::text
      AND d.lane = @lane::text
      AND d.target = @target::text
      AND d.status = 'dead_letter'
      AND (@error_contains::text = '' OR strpos(d.last_error, @error_contains::text) > 0)
    ORDER BY d.id
    LIMIT @max::integer
    FOR UPDATE SKIP LOCKED
)
RETURNING m.id;

-- name: MessageReleaseOrderingKey :many
-- An operator releases an ordering key blocked by a dead letter: the dead
-- letters of the key stop holding it, so its next message becomes the head.
-- They stay dead letters (Redrive can still send them back).
UPDATE pgoutbox_message
SET ordering_key_released = true,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
WHERE scope = @scope::text
  AND lane = @lane::text
  AND target = @target::text
  AND ordering_key = @ordering_key::text
  AND status = 'dead_letter'
  AND NOT ordering_key_released
RETURNING id;

-- name: MessagePurge :one
-- Deletes one batch of finished messages (status in @statuses) last
-- updated more than @older_than_micros ago on the store's clock, walking the primary key upwards from @after_id so
-- that a purge visits each row once however many batches it takes. Returns
-- how many rows went and the highest id the batch looked at (0 when the walk
-- reached the end). A batch holds at most @max row locks and writes at most
-- @max deletions to the WAL; deleting the row frees its dedupe key.
WITH cutoff AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
               - sqlc.arg('older_than_micros')::bigint * interval '1 microsecond' AS at
),
batch AS (
    SELECT p.id AS batch_id,
           (p.status = ANY(@statuses::text[]) AND p.updated_at < (SELECT c.at FROM cutoff c)) AS doomed
    FROM pgoutbox_message p
    WHERE p.scope = @scope::text
      AND p.id > @after_id::bigint
    ORDER BY p.id
    LIMIT @max::integer
),
deleted AS (
    DELETE FROM pgoutbox_message m
    USING batch b, cutoff c
    WHERE m.id = b.batch_id
      AND b.doomed
      -- Recheck: the row may have moved on since the batch was read.
      AND m.status = ANY(@statuses::text[])
      AND m.updated_at < c.at
    RETURNING m.id
)
SELECT (SELECT count(*) FROM deleted)::bigint AS deleted,
       coalesce((SELECT max(b.batch_id) FROM batch b), 0)::bigint AS last_id,
       (SELECT count(*) FROM batch)::bigint AS scanned;

-- name: MessagePurgeCount :one
-- What a purge with the same arguments would delete (for --dry-run).
SELECT count(*)::bigint
FROM pgoutbox_message
WHERE scope = @scope::text
  AND status = ANY(@statuses::text[])
  AND updated_at < coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
                   - sqlc.arg('older_than_micros')::bigint * interval '1 microsecond';

-- name: MessageStats :many
-- Per (lane, target): counts by status and the signals an operator watches.
-- Each branch reads one partial index, so the cost follows the pending,
-- in-flight and dead rows, not the delivered history: pending and the oldest
-- due time from pgoutbox_message_due_unkeyed_idx and pgoutbox_message_key_idx,
-- claimed and expired leases from pgoutbox_message_lease_idx, dead letters
-- from pgoutbox_message_dead_letter_idx. Delivered rows are counted only when
-- @with_delivered is set, as that reads the whole table.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()) AS now
),
pending_parts AS (
    SELECT p.lane, p.target, count(*) AS n,
           count(*) FILTER (WHERE p.available_at <= (SELECT k.now FROM clock k)) AS due,
           min(p.available_at) FILTER (WHERE p.available_at <= (SELECT k.now FROM clock k)) AS oldest_due
    FROM pgoutbox_message p
    WHERE p.scope = @scope::text AND p.status = 'pending' AND p.ordering_key IS NULL
    GROUP BY p.lane, p.target
    UNION ALL
    SELECT p.lane, p.target, count(*) AS n,
           count(*) FILTER (WHERE p.available_at <= (SELECT k.now FROM clock k)) AS due,
           min(p.available_at) FILTER (WHERE p.available_at <= (SELECT k.now FROM clock k)) AS oldest_due
    FROM pgoutbox_message p
    WHERE p.scope = @scope::text AND p.status = 'pending'
      AND pgoutbox_holds_ordering_key(p.status, p.ordering_key, p.ordering_key_released)
    GROUP BY p.lane, p.target
),
pending AS (
    SELECT pp.lane, pp.target, sum(pp.n) AS n, sum(pp.due) AS due, min(pp.oldest_due) AS oldest_due
    FROM pending_parts pp
    GROUP BY pp.lane, pp.target
),
claimed AS (
    SELECT c.lane, c.target, count(*) AS n,
           count(*) FILTER (WHERE c.lease_expires_at <= (SELECT k.now FROM clock k)) AS expired
    FROM pgoutbox_message c
    WHERE c.scope = @scope::text AND c.status = 'claimed'
    GROUP BY c.lane, c.target
),
dead AS (
    SELECT d.lane, d.target, count(*) AS n
    FROM pgoutbox_message d
    WHERE d.scope = @scope::text AND d.status = 'dead_letter'
    GROUP BY d.lane, d.target
),
delivered AS (
    SELECT v.lane, v.target, count(*) AS n
    FROM pgoutbox_message v
    WHERE @with_delivered::boolean AND v.scope = @scope::text AND v.status = 'delivered'
    GROUP BY v.lane, v.target
),
keys AS (
    SELECT lane, target FROM pending
    UNION SELECT lane, target FROM claimed
    UNION SELECT lane, target FROM dead
    UNION SELECT lane, target FROM delivered
)
SELECT k.lane::text AS lane,
       k.target::text AS target,
       coalesce(p.n, 0)::bigint AS pending,
       coalesce(p.due, 0)::bigint AS due,
       coalesce(c.n, 0)::bigint AS claimed,
       coalesce(c.expired, 0)::bigint AS expired_leases,
       coalesce(d.n, 0)::bigint AS dead_letters,
       coalesce(v.n, 0)::bigint AS delivered,
       -- How long the oldest due message has waited; 0 when none is due.
       coalesce(extract(epoch FROM ((SELECT k2.now FROM clock k2) - p.oldest_due)) * 1000000, 0)::bigint
           AS oldest_due_age_micros
FROM keys k
LEFT JOIN pending p ON p.lane = k.lane AND p.target = k.target
LEFT JOIN claimed c ON c.lane = k.lane AND c.target = k.target
LEFT JOIN dead d ON d.lane = k.lane AND d.target = k.target
LEFT JOIN delivered v ON v.lane = k.lane AND v.target = k.target
-- Byte order, whatever the database's collation: the same on every server
-- (and in memstore), so outputs compare and scripts can rely on it.
ORDER BY k.lane COLLATE "C", k.target COLLATE "C";

-- name: MessageLockDue :many
-- Lock mode (see PostgresStore.LockBatch): takes row locks on up to @max due
-- pending messages in the caller's transaction, and writes nothing. The
-- batch's outcome is written by MessageFinishLocked in the same
-- transaction: one row version per message instead of two, and one commit
-- per batch.
--
-- Keyed messages are taken as in MessageClaim: only the head of each key,
-- found by the same walk, and a head locked by another batch holds its key
-- (it is still pending, and the walk sees it as the head). Unkeyed
-- messages come first, oldest first, and heads fill the rest of the batch:
-- the unkeyed scan keeps a plain LIMIT, which lets the planner read the due
-- index in order and stop (a LIMIT computed from the other branch would
-- leave it guessing, and it reads the whole table and sorts). Locks are
-- never taken beyond @max: a locked row that the batch did not return would
-- stay locked, and undelivered, until the batch ends. skipped is, on a
-- keyed row, how many heads that looked claimable the walk passed, held by
-- other batches, before it reached the row (-1 on unkeyed rows).
WITH RECURSIVE
-- Heads of the keys after @after_key, in key order.
heads_after (ordering_key, id, status, available_at) AS (
    (SELECT m.ordering_key, m.id, m.status, m.available_at
     FROM pgoutbox_message m
     WHERE m.scope = @scope::text
       AND m.lane = @lane::text
       AND m.target = @target::text
       AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
       AND m.ordering_key > @after_key::text
     ORDER BY m.ordering_key, m.id
     LIMIT 1)
    UNION ALL
    SELECT n.ordering_key, n.id, n.status, n.available_at
    FROM heads_after h
    CROSS JOIN LATERAL (
        SELECT m.ordering_key, m.id, m.status, m.available_at
        FROM pgoutbox_message m
        WHERE m.scope = @scope::text
          AND m.lane = @lane::text
          AND m.target = @target::text
          AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
          AND m.ordering_key > h.ordering_key
        ORDER BY m.ordering_key, m.id
        LIMIT 1
    ) n
),
-- Then, wrapping around, the heads of the keys up to @after_key.
heads_before (ordering_key, id, status, available_at) AS (
    (SELECT m.ordering_key, m.id, m.status, m.available_at
     FROM pgoutbox_message m
     WHERE m.scope = @scope::text
       AND m.lane = @lane::text
       AND m.target = @target::text
       AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
       AND m.ordering_key <= @after_key::text
     ORDER BY m.ordering_key, m.id
     LIMIT 1)
    UNION ALL
    SELECT n.ordering_key, n.id, n.status, n.available_at
    FROM heads_before h
    CROSS JOIN LATERAL (
        SELECT m.ordering_key, m.id, m.status, m.available_at
        FROM pgoutbox_message m
        WHERE m.scope = @scope::text
          AND m.lane = @lane::text
          AND m.target = @target::text
          AND pgoutbox_holds_ordering_key(m.status, m.ordering_key, m.ordering_key_released)
          AND m.ordering_key > h.ordering_key
          AND m.ordering_key <= @after_key::text
        ORDER BY m.ordering_key, m.id
        LIMIT 1
    ) n
),
unkeyed AS (
    SELECT m.id
    FROM pgoutbox_message m
    WHERE m.scope = @scope::text
      AND m.lane = @lane::text
      AND m.target = @target::text
      AND m.status = 'pending'
      AND m.ordering_key IS NULL
      AND m.available_at <= coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
      AND (m.available_at, m.id) > (sqlc.arg('after_available_at')::timestamptz, sqlc.arg('after_id')::bigint)
      -- SKIP LOCKED does not skip rows this transaction already locked: a
      -- second lock in the same batch names the first one's rows.
      AND m.id <> ALL(@locked_ids::bigint[])
    ORDER BY m.available_at, m.id
    LIMIT @max::integer
    FOR UPDATE SKIP LOCKED
),
-- The walk is read lazily: the second half runs only when the first found
-- too few heads to lock.
keyed AS (
    -- As in MessageClaim: the walk runs as far as the LIMIT pulls it, past
    -- heads another batch holds locked.
    SELECT l.id,
           -- As in MessageClaim: heads passed because another batch holds
           -- them, before this one.
           c.visited - row_number() OVER () AS skipped
    FROM (
        SELECT w.id, row_number() OVER () AS visited
        FROM (
            SELECT h.id FROM heads_after h
            WHERE h.status = 'pending' AND h.available_at <= coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
            UNION ALL
            SELECT h.id FROM heads_before h
            WHERE h.status = 'pending' AND h.available_at <= coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
        ) w
    ) c
    CROSS JOIN LATERAL (
        SELECT m.id
        FROM pgoutbox_message m
        WHERE m.id = c.id
          AND m.status = 'pending'
          AND m.available_at <= coalesce(sqlc.narg('now')::timestamptz, statement_timestamp())
          AND m.id <> ALL(@locked_ids::bigint[])
        FOR UPDATE SKIP LOCKED
    ) l
    LIMIT greatest(sqlc.arg('max')::integer - (SELECT count(u.id) FROM unkeyed u), 0)
)
SELECT sqlc.embed(m), c.skipped::bigint AS skipped
FROM (
    SELECT y.id, y.skipped FROM keyed y
    UNION ALL
    SELECT u.id, -1::bigint FROM unkeyed u
) c
JOIN pgoutbox_message m ON m.id = c.id
ORDER BY m.available_at, m.id;

-- name: MessageFinishLocked :many
-- Writes the outcome of a locked batch: successes delivered; failures
-- pending again after their retry delay, or dead letters when permanent or
-- out of attempts. Every outcome counts an attempt. The arrays hold one
-- outcome per position, for ids the caller holds locked, each once.
--
-- No join (see MessageAckMany): rows are found by id = ANY, and each row
-- reads its outcome at its id's position, found once per row by the
-- sub-select. A join of the rows to the unnested outcomes was planned, for
-- a scope the statistics had not seen (estimated at one row), as a
-- sequential scan compared with every outcome: 1,279,744 comparisons and
-- 354 ms for a batch of 256 in 5,000 rows.
UPDATE pgoutbox_message m
SET (status, attempt_count, available_at, last_error, ordering_key_released, updated_at) = (
    SELECT CASE
               WHEN o.ok THEN 'delivered'
               WHEN o.permanent OR m.attempt_count + 1 >= m.max_attempts THEN 'dead_letter'
               ELSE 'pending'
           END,
           m.attempt_count + 1,
           CASE
               WHEN NOT o.ok AND NOT o.permanent AND m.attempt_count + 1 < m.max_attempts
               THEN k.now + o.retry_after_micros * interval '1 microsecond'
               ELSE m.available_at
           END,
           CASE WHEN o.ok THEN m.last_error ELSE o.reason END,
           k.release_keys AND m.ordering_key IS NOT NULL
               AND NOT o.ok
               AND (o.permanent OR m.attempt_count + 1 >= m.max_attempts),
           k.now
    FROM (
        SELECT (k.oks)[p.i] AS ok,
               (k.permanents)[p.i] AS permanent,
               (k.retry_after_micros)[p.i] AS retry_after_micros,
               (k.reasons)[p.i] AS reason,
               k.now
        FROM (SELECT array_position(k.ids, m.id) AS i) p
    ) o
)
FROM (
    -- One row: the statement's parameters, named once.
    SELECT coalesce(sqlc.narg('now')::timestamptz, statement_timestamp()) AS now,
           @release_keys::boolean AS release_keys,
           @ids::bigint[] AS ids,
           @oks::boolean[] AS oks,
           @permanents::boolean[] AS permanents,
           @retry_after_micros::bigint[] AS retry_after_micros,
           @reasons::text[] AS reasons
) k
WHERE m.id = ANY(k.ids)
  AND m.scope = @scope::text
RETURNING m.id, m.status;
