-- +goose NO TRANSACTION
-- +goose Up

-- Ordered delivery, headers, and the schedule a producer asked for. Online on
-- a busy table: every step is either catalog-only under a short lock (the
-- new columns are nullable or have a constant default, so nothing is
-- rewritten), or takes no lock that blocks reads and writes (CREATE INDEX
-- CONCURRENTLY, VALIDATE CONSTRAINT). Statements that need an ACCESS
-- EXCLUSIVE lock wait at most lock_timeout for it and are retried, so a long
-- transaction on the table delays the migration instead of queueing every
-- reader and writer behind it (outbox.Migrate then runs it again). The
-- migration runs outside a transaction (CREATE INDEX CONCURRENTLY cannot run
-- in one); each step is idempotent, so a migration interrupted half way is
-- simply run again.

-- An ACCESS EXCLUSIVE lock waits at most this long; outbox.Migrate runs
-- the migration again after a lock timeout (each step is idempotent).
SET lock_timeout = '2s';

-- The ordering key: messages of one (scope, lane, target, ordering key) are
-- handed out one at a time, in id order.
ALTER TABLE pgoutbox_message ADD COLUMN IF NOT EXISTS ordering_key text;
-- An operator's release of a dead-lettered head (or the store's, with
-- WithSkipDeadLetters): the dead letter no longer holds its key.
ALTER TABLE pgoutbox_message ADD COLUMN IF NOT EXISTS ordering_key_released boolean NOT NULL DEFAULT false;
-- Headers as a JSON object of strings; NULL when none.
ALTER TABLE pgoutbox_message ADD COLUMN IF NOT EXISTS headers jsonb;
-- The AvailableAt a producer asked for, which nacks and redrives do not
-- move: dedupe compares the draft with it. NULL when the draft left
-- AvailableAt zero.
ALTER TABLE pgoutbox_message ADD COLUMN IF NOT EXISTS requested_available_at timestamptz;

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pgoutbox_message_ordering_key_check') THEN
        ALTER TABLE pgoutbox_message ADD CONSTRAINT pgoutbox_message_ordering_key_check
            CHECK (btrim(ordering_key) <> '' AND octet_length(ordering_key) <= 1024) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pgoutbox_message_headers_check') THEN
        ALTER TABLE pgoutbox_message ADD CONSTRAINT pgoutbox_message_headers_check
            CHECK (jsonb_typeof(headers) = 'object') NOT VALID;
    END IF;
END
$$;
-- +goose StatementEnd

RESET lock_timeout;

-- Scans the table under SHARE UPDATE EXCLUSIVE: reads and writes go on.
ALTER TABLE pgoutbox_message VALIDATE CONSTRAINT pgoutbox_message_ordering_key_check;
ALTER TABLE pgoutbox_message VALIDATE CONSTRAINT pgoutbox_message_headers_check;

-- Claim, unkeyed messages: pending messages without an ordering key, in
-- hand-out order. Replaces pgoutbox_message_due_idx (dropped by the next
-- migration, once relays of the previous release are gone).
CREATE INDEX CONCURRENTLY IF NOT EXISTS pgoutbox_message_due_unkeyed_idx
    ON pgoutbox_message (scope, lane, target, available_at, id)
    WHERE status = 'pending' AND ordering_key IS NULL;

-- Whether a message holds its ordering key: pending, claimed, or a dead
-- letter not released. The key index's predicate, and every query that reads
-- that index states it the same way. It is PL/pgSQL so that the planner does
-- not inline it: the planner then estimates the condition with a fixed
-- selectivity instead of the column statistics, which on a queue table lag
-- behind (analyzed while the table was drained, or before keys were used,
-- they say no row holds a key). With those statistics, each step of the
-- claim's walk from key to key was planned as a scan of every keyed message
-- and a sort, so a claim read the keyed backlog once per key it visited
-- (BENCHMARKS.md, "Figures behind design choices").
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgoutbox_holds_ordering_key(status text, ordering_key text, ordering_key_released boolean)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN ordering_key IS NOT NULL
        AND (status IN ('pending', 'claimed') OR (status = 'dead_letter' AND NOT ordering_key_released));
END
$$;
-- +goose StatementEnd

-- Claim, keyed messages: every message that holds its key, by key and then
-- id, so the head of a key is the first entry of its key and a claim walks
-- from key to key without reading the messages queued behind each head.
CREATE INDEX CONCURRENTLY IF NOT EXISTS pgoutbox_message_key_idx
    ON pgoutbox_message (scope, lane, target, ordering_key, id)
    WHERE pgoutbox_holds_ordering_key(status, ordering_key, ordering_key_released);

-- A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind, which
-- IF NOT EXISTS would then skip: refuse to go on with one.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname IN ('pgoutbox_message_due_unkeyed_idx', 'pgoutbox_message_key_idx') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'pgoutbox: an index of migration 2 is invalid (an earlier run was interrupted); DROP INDEX CONCURRENTLY it and migrate again';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS pgoutbox_message_key_idx;
DROP FUNCTION IF EXISTS pgoutbox_holds_ordering_key(text, text, boolean);
DROP INDEX CONCURRENTLY IF EXISTS pgoutbox_message_due_unkeyed_idx;
ALTER TABLE pgoutbox_message DROP CONSTRAINT IF EXISTS pgoutbox_message_headers_check;
ALTER TABLE pgoutbox_message DROP CONSTRAINT IF EXISTS pgoutbox_message_ordering_key_check;
ALTER TABLE pgoutbox_message DROP COLUMN IF EXISTS requested_available_at;
ALTER TABLE pgoutbox_message DROP COLUMN IF EXISTS headers;
ALTER TABLE pgoutbox_message DROP COLUMN IF EXISTS ordering_key_released;
ALTER TABLE pgoutbox_message DROP COLUMN IF EXISTS ordering_key;
