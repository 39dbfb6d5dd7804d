-- name: MessageInsert :one
-- Enqueue without a dedupe key: a plain insert, nothing can conflict.
--
-- With @notify the statement also signals relays LISTENing on channel
-- 'pgoutbox' (payload: scope, lane and target separated by the unit
-- separator, a control character no name may contain). Postgres delivers it
-- at commit, and only then, so a relay never wakes for a message it cannot yet
-- see. The CTE is aliased as the table so sqlc returns the table's model.
WITH inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, available_at, max_attempts, created_at, updated_at
    ) VALUES (
        @scope::text,
        @lane::text,
        @target::text,
        @payload::jsonb,
        coalesce(sqlc.narg('available_at')::timestamptz, sqlc.narg('now')::timestamptz, now()),
        @max_attempts::integer,
        coalesce(sqlc.narg('now')::timestamptz, now()),
        coalesce(sqlc.narg('now')::timestamptz, now())
    )
    RETURNING *
)
SELECT sqlc.embed(pgoutbox_message),
       CASE WHEN @notify::boolean
            THEN pg_notify('pgoutbox', pgoutbox_message.scope || chr(31) || pgoutbox_message.lane || chr(31) || pgoutbox_message.target) IS NOT NULL
            ELSE false
       END AS notified
FROM inserted AS pgoutbox_message;

-- name: MessageInsertDeduplicated :one
-- Enqueue with a dedupe key. ON CONFLICT DO NOTHING instead of letting the
-- unique index raise: a unique violation would abort the caller's transaction,
-- and a duplicate is an expected outcome, not an error. No row back means the
-- key is taken (and nothing is notified); the caller then reads the holder
-- with MessageGetByDedupeKey. A concurrent insert of the same key waits here
-- for the other transaction and then either inserts (the other rolled back)
-- or returns nothing.
WITH inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, dedupe_key, available_at, max_attempts, created_at, updated_at
    ) VALUES (
        @scope::text,
        @lane::text,
        @target::text,
        @payload::jsonb,
        @dedupe_key::text,
        coalesce(sqlc.narg('available_at')::timestamptz, sqlc.narg('now')::timestamptz, now()),
        @max_attempts::integer,
        coalesce(sqlc.narg('now')::timestamptz, now()),
        coalesce(sqlc.narg('now')::timestamptz, now())
    )
    ON CONFLICT (scope, lane, target, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING *
)
SELECT sqlc.embed(pgoutbox_message),
       CASE WHEN @notify::boolean
            THEN pg_notify('pgoutbox', pgoutbox_message.scope || chr(31) || pgoutbox_message.lane || chr(31) || pgoutbox_message.target) IS NOT NULL
            ELSE false
       END AS notified
FROM inserted AS pgoutbox_message;

-- name: MessageInsertMany :many
-- Enqueue a batch in one statement: one array per column, unnested in input
-- order. Rows are inserted, and their ids drawn, in @ordinal order, so the
-- rows that come back sorted by id line up with the drafts that were
-- inserted. '' in @dedupe_keys means no key; @has_available_at false means
-- now. Keys already taken (or repeated in the batch) insert nothing; the
-- caller reads their holders with MessageGetByDedupeKeys. Notifications are
-- one per (scope, lane, target): Postgres folds identical ones in a
-- transaction.
WITH inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, dedupe_key, available_at, max_attempts, created_at, updated_at
    )
    SELECT @scope::text,
           d.lane,
           d.target,
           d.payload,
           nullif(d.dedupe_key, ''),
           CASE WHEN d.has_available_at THEN d.available_at
                ELSE coalesce(sqlc.narg('now')::timestamptz, now())
           END,
           d.max_attempts,
           coalesce(sqlc.narg('now')::timestamptz, now()),
           coalesce(sqlc.narg('now')::timestamptz, now())
    FROM (
        -- Set-returning functions in one select list advance in lockstep.
        SELECT unnest(@lanes::text[]) AS lane,
               unnest(@targets::text[]) AS target,
               unnest(@payloads::jsonb[]) AS payload,
               unnest(@dedupe_keys::text[]) AS dedupe_key,
               unnest(@available_ats::timestamptz[]) AS available_at,
               unnest(@has_available_at::boolean[]) AS has_available_at,
               unnest(@max_attempts::integer[]) AS max_attempts,
               generate_subscripts(@lanes::text[], 1) AS ordinal
    ) d
    ORDER BY d.ordinal
    ON CONFLICT (scope, lane, target, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING *
)
SELECT sqlc.embed(pgoutbox_message),
       CASE WHEN @notify::boolean
            THEN pg_notify('pgoutbox', pgoutbox_message.scope || chr(31) || pgoutbox_message.lane || chr(31) || pgoutbox_message.target) IS NOT NULL
            ELSE false
       END AS notified
FROM inserted AS pgoutbox_message
ORDER BY pgoutbox_message.id;

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
-- Candidates come from two index range scans, each locking with SKIP LOCKED so
-- that concurrent claimers pass over each other's rows instead of queueing:
--   expired: claimed rows whose lease ran out (their consumer died or stalled);
--   due:     pending rows whose time has come.
-- Both are ordered by (available_at, id) and merged, so the oldest work goes
-- first whichever state it is in. An expired row that has used all its
-- attempts is a poison message: it is dead-lettered here, in the same
-- statement, and never handed out again.
--
-- Each branch may lock up to @max rows; rows locked but not picked stay
-- unchanged and are released when the statement's transaction ends. In the
-- steady state the expired branch is empty and costs one index probe.
--
-- The same statement acks the claimer's previous successes (@ack_ids with
-- @ack_tokens at the same positions, fenced as in MessageAckMany): a relay
-- that keeps up pays one statement and one commit per batch instead of two.
-- The ack rows are locked in id order (an index scan of id = ANY). The claim
-- branches almost never wait, but SKIP LOCKED does not promise it: when a
-- candidate's updater commits at the instant the claim locks it, PostgreSQL
-- follows the row's update chain and waits for the next version's locker,
-- which can close a cycle with another claimer. The loser gets a deadlock
-- error with nothing done; the store runs the statement again.
--
-- The clock is read once, in a CTE, so every row of one claim carries the same
-- timestamps. The result holds the claimed rows (status 'claimed'), then the
-- rows dead-lettered on the way (status 'dead_letter'), then the acked rows
-- (status 'delivered').
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now,
           coalesce(sqlc.narg('now')::timestamptz, now())
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
picked AS (
    SELECT c.candidate_id
    FROM (
        SELECT e.candidate_id, e.candidate_available_at FROM expired e WHERE NOT e.exhausted
        UNION ALL
        SELECT d.candidate_id, d.candidate_available_at FROM due d
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
    WHERE m.id = ANY(@ack_ids::bigint[])
      AND m.claim_token = (@ack_tokens::uuid[])[array_position(@ack_ids::bigint[], m.id)]
      AND m.scope = @scope::text
    RETURNING m.id, m.scope, m.lane, m.target, m.payload, m.dedupe_key, m.status, m.available_at,
              m.attempt_count, m.max_attempts, m.claimed_by, m.claim_token, m.lease_expires_at,
              m.last_error, m.created_at, m.updated_at
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
-- The claimer knows its acked messages: spare it their payloads.
SELECT id, scope, lane, target, 'null'::jsonb, dedupe_key, status, available_at,
       attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at,
       last_error, created_at, updated_at
FROM acked
ORDER BY status, available_at, id;

-- name: MessageAck :execrows
-- Fenced by the claim token: only the current holder can complete a message.
-- A holder whose lease has expired still succeeds as long as nobody has
-- claimed the message since; the work is done, and acking spares a redelivery.
UPDATE pgoutbox_message
SET status = 'delivered',
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE id = @id::bigint
  AND scope = @scope::text
  AND status = 'claimed'
  AND claim_token = @claim_token::uuid;

-- name: MessageAckMany :many
-- Acks a batch of (id, token) pairs in one statement and returns the pairs
-- that were still held. Each id is matched with the token at the same
-- position. Only claimed rows have a token (pgoutbox_message_claim_check), so
-- the token test stands for status = 'claimed' without letting the planner
-- prefer the lease index (which holds every claim since the last VACUUM)
-- over primary-key lookups. The index scan of id = ANY visits ids in
-- ascending order, so two relays acking overlapping batches (possible only
-- after lost claims) lock in the same order and cannot deadlock.
UPDATE pgoutbox_message m
SET status = 'delivered',
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE m.id = ANY(@ids::bigint[])
  AND m.claim_token = (@claim_tokens::uuid[])[array_position(@ids::bigint[], m.id)]
  AND m.scope = @scope::text
RETURNING m.id, (@claim_tokens::uuid[])[array_position(@ids::bigint[], m.id)]::uuid AS claim_token;

-- name: MessageExtendLeases :many
-- Heartbeat: moves the lease of each held (id, token) pair to now + @lease
-- and returns the pairs still held. A holder whose lease already ran out may
-- extend it while nobody has claimed the message since. Matches and locks
-- like MessageAckMany.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now,
           coalesce(sqlc.narg('now')::timestamptz, now())
               + sqlc.arg('lease_micros')::bigint * interval '1 microsecond' AS lease_until
)
UPDATE pgoutbox_message m
SET lease_expires_at = k.lease_until,
    updated_at = k.now
FROM clock k
WHERE m.id = ANY(@ids::bigint[])
  AND m.claim_token = (@claim_tokens::uuid[])[array_position(@ids::bigint[], m.id)]
  AND m.scope = @scope::text
RETURNING m.id, m.claim_token;

-- name: MessageDeadLetter :execrows
-- A permanent failure: the holder dead-letters the message at once, whatever
-- attempts it has left. Fenced like MessageAck.
UPDATE pgoutbox_message
SET status = 'dead_letter',
    last_error = @last_error::text,
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE id = @id::bigint
  AND scope = @scope::text
  AND status = 'claimed'
  AND claim_token = @claim_token::uuid;

-- name: MessageNack :one
-- Fenced like MessageAck. A message with attempts left returns to pending at
-- @retry_at, or @retry_after_micros after now (both NULL: now); one without
-- goes to dead_letter, keeping its available_at as a record of when it was
-- last due. A delay measured from the database's clock keeps backoff right
-- on hosts whose clocks are off. No row back means the claim was lost.
UPDATE pgoutbox_message
SET status = CASE WHEN attempt_count >= max_attempts THEN 'dead_letter' ELSE 'pending' END,
    available_at = CASE
        WHEN attempt_count >= max_attempts THEN available_at
        ELSE coalesce(
            sqlc.narg('retry_at')::timestamptz,
            coalesce(sqlc.narg('now')::timestamptz, now())
                + coalesce(sqlc.narg('retry_after_micros')::bigint, 0) * interval '1 microsecond'
        )
    END,
    last_error = @last_error::text,
    claimed_by = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE id = @id::bigint
  AND scope = @scope::text
  AND status = 'claimed'
  AND claim_token = @claim_token::uuid
RETURNING status;

-- name: MessageList :many
-- Operator listing: optional status, lane, target, dedupe key and error-text
-- filters, keyset pagination by id (pass the last id of the previous page; 0
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
  AND (sqlc.narg('dedupe_key')::text IS NULL OR dedupe_key = sqlc.narg('dedupe_key')::text)
  AND (@error_contains::text = '' OR strpos(last_error, @error_contains::text) > 0)
  AND id > @after_id::bigint
ORDER BY id
LIMIT @max::integer;

-- name: MessageListLive :many
-- MessageList for one of the statuses with a partial index (pending, claimed,
-- dead_letter). Live rows are usually the newest, so an id-ordered walk of
-- the primary key would read the whole delivered history before reaching
-- them (290 ms on 1M delivered rows before the first of 100k pending). The
-- store plans it per execution, so the status is known and its partial index
-- serves the rows; `id + 0` keeps the planner from walking the primary key
-- for the order and sorts the top @max ids instead, reading only the index
-- when the filters are lane and target (an index-only scan: 25 ms for 100k
-- pending, against 75 ms for whole rows); the page's rows are fetched by id
-- afterwards. The cost follows that status's rows, never the history.
SELECT m.*
FROM pgoutbox_message m
WHERE m.id IN (
    SELECT p.id
    FROM pgoutbox_message p
    WHERE p.scope = @scope::text
      AND p.status = @status::text
      AND (sqlc.narg('lane')::text IS NULL OR p.lane = sqlc.narg('lane')::text)
      AND (sqlc.narg('target')::text IS NULL OR p.target = sqlc.narg('target')::text)
      AND (sqlc.narg('dedupe_key')::text IS NULL OR p.dedupe_key = sqlc.narg('dedupe_key')::text)
      AND (@error_contains::text = '' OR strpos(p.last_error, @error_contains::text) > 0)
      AND p.id > @after_id::bigint
    ORDER BY p.id + 0
    LIMIT @max::integer
)
  AND m.status = @status::text
ORDER BY m.id;

-- name: MessageRedriveByIDs :many
-- Sends dead letters back to pending with a fresh set of attempts, due now.
-- Ids that are not dead letters of this scope are left alone; the caller
-- compares the ids returned with the ids asked for. last_error stays as the
-- record of why the message died.
UPDATE pgoutbox_message
SET status = 'pending',
    attempt_count = 0,
    available_at = coalesce(sqlc.narg('now')::timestamptz, now()),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
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
    available_at = coalesce(sqlc.narg('now')::timestamptz, now()),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
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

-- name: MessagePurge :one
-- Deletes one batch of finished messages (status in @statuses) last
-- updated more than @older_than_micros ago on the store's clock, walking the primary key upwards from @after_id so
-- that a purge visits each row once however many batches it takes. Returns
-- how many rows went and the highest id the batch looked at (0 when the walk
-- reached the end). A batch holds at most @max row locks and writes at most
-- @max deletions to the WAL; deleting the row frees its dedupe key.
WITH cutoff AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now())
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
  AND updated_at < coalesce(sqlc.narg('now')::timestamptz, now())
                   - sqlc.arg('older_than_micros')::bigint * interval '1 microsecond';

-- name: MessageStats :many
-- Per (lane, target): counts by status and the signals an operator watches.
-- Each branch reads one partial index, so the cost follows the pending,
-- in-flight and dead rows, not the delivered history: pending and the oldest
-- due time from pgoutbox_message_due_idx, claimed and expired leases from
-- pgoutbox_message_lease_idx, dead letters from
-- pgoutbox_message_dead_letter_idx. Delivered rows are counted only when
-- @with_delivered is set, as that reads the whole table.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now
),
pending AS (
    SELECT p.lane, p.target, count(*) AS n,
           count(*) FILTER (WHERE p.available_at <= (SELECT k.now FROM clock k)) AS due,
           min(p.available_at) FILTER (WHERE p.available_at <= (SELECT k.now FROM clock k)) AS oldest_due
    FROM pgoutbox_message p
    WHERE p.scope = @scope::text AND p.status = 'pending'
    GROUP BY p.lane, p.target
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
ORDER BY k.lane, k.target;

-- name: MessageLockDue :many
-- Lock mode (see PostgresStore.LockBatch): takes row locks on up to @max due
-- pending messages, oldest first, in the caller's transaction, and writes
-- nothing. The batch's outcome is written by MessageFinishLocked in the same
-- transaction: one row version per message instead of two, and one commit
-- per batch.
SELECT *
FROM pgoutbox_message m
WHERE m.scope = @scope::text
  AND m.lane = @lane::text
  AND m.target = @target::text
  AND m.status = 'pending'
  AND m.available_at <= coalesce(sqlc.narg('now')::timestamptz, now())
  AND (m.available_at, m.id) > (sqlc.arg('after_available_at')::timestamptz, sqlc.arg('after_id')::bigint)
  -- SKIP LOCKED does not skip rows this transaction already locked: a
  -- second lock in the same batch names the first one's rows.
  AND m.id <> ALL(@locked_ids::bigint[])
ORDER BY m.available_at, m.id
LIMIT @max::integer
FOR UPDATE SKIP LOCKED;

-- name: MessageFinishLocked :many
-- Writes the outcome of a locked batch: successes delivered; failures
-- pending again after their retry delay, or dead letters when permanent or
-- out of attempts. Every outcome counts an attempt. Rows are found by
-- primary key and each id's outcome by its position in the arrays (see
-- MessageAckMany for why no join); the caller holds their locks.
UPDATE pgoutbox_message m
SET status = CASE
        WHEN (@oks::boolean[])[array_position(@ids::bigint[], m.id)] THEN 'delivered'
        WHEN (@permanents::boolean[])[array_position(@ids::bigint[], m.id)]
             OR m.attempt_count + 1 >= m.max_attempts THEN 'dead_letter'
        ELSE 'pending'
    END,
    attempt_count = m.attempt_count + 1,
    available_at = CASE
        WHEN NOT (@oks::boolean[])[array_position(@ids::bigint[], m.id)]
             AND NOT (@permanents::boolean[])[array_position(@ids::bigint[], m.id)]
             AND m.attempt_count + 1 < m.max_attempts
        THEN coalesce(sqlc.narg('now')::timestamptz, now())
             + (@retry_after_micros::bigint[])[array_position(@ids::bigint[], m.id)] * interval '1 microsecond'
        ELSE m.available_at
    END,
    last_error = CASE
        WHEN (@oks::boolean[])[array_position(@ids::bigint[], m.id)] THEN m.last_error
        ELSE (@reasons::text[])[array_position(@ids::bigint[], m.id)]
    END,
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE m.id = ANY(@ids::bigint[])
  AND m.scope = @scope::text
RETURNING m.id, m.status;
