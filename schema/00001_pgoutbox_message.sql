-- +goose Up

-- jsonb holds Unicode; under another server encoding a payload such as
-- {"a":"\u00e9"} fails at insert time (SQLSTATE 0A000) and aborts the
-- producer's transaction. Refuse such a database before creating anything.
-- (Added after release: a database that already ran this migration passed
-- it, or never will run it again.)
-- +goose StatementBegin
DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'pgoutbox needs a database with the UTF8 encoding; this one uses %', current_setting('server_encoding')
            USING HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' (with a UTF-8 locale, or TEMPLATE template0)';
    END IF;
END
$$;
-- +goose StatementEnd

-- One row per outbox message, from enqueue until a purge removes it.
--
-- Life cycle: pending -> claimed -> delivered, with claimed -> pending on a
-- retryable nack and claimed -> dead_letter once attempts run out. A claimed
-- row whose lease has expired is claimable again (or dead-lettered when it has
-- no attempts left) without anyone having to move it back first.
--
-- Hot-path design: the claim, ack and nack statements touch only the partial
-- indexes below, whose predicates keep delivered and dead rows out, so their
-- cost does not grow with history. A later migration can add per-key FIFO
-- (a nullable ordering_key column: adding one is a catalog-only change, no
-- table rewrite) and filter the claim's `due` step to the head of each key.
CREATE TABLE pgoutbox_message (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- '' is the unscoped store; Scoped(s) views use s, which is never blank.
    scope            text        NOT NULL DEFAULT '',
    lane             text        NOT NULL,
    target           text        NOT NULL,
    payload          jsonb       NOT NULL,
    dedupe_key       text,
    status           text        NOT NULL DEFAULT 'pending',
    available_at     timestamptz NOT NULL,
    attempt_count    integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    claimed_by       text,
    -- gen_random_uuid(): 122 random bits from the server's strong random source.
    claim_token      uuid,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,

    CONSTRAINT pgoutbox_message_status_check
        CHECK (status IN ('pending', 'claimed', 'delivered', 'dead_letter')),
    CONSTRAINT pgoutbox_message_scope_check
        CHECK (octet_length(scope) <= 512),
    CONSTRAINT pgoutbox_message_lane_check
        CHECK (btrim(lane) <> '' AND octet_length(lane) <= 255),
    CONSTRAINT pgoutbox_message_target_check
        CHECK (btrim(target) <> '' AND octet_length(target) <= 255),
    CONSTRAINT pgoutbox_message_dedupe_key_check
        CHECK (btrim(dedupe_key) <> '' AND octet_length(dedupe_key) <= 1024),
    CONSTRAINT pgoutbox_message_attempts_check
        CHECK (max_attempts > 0 AND attempt_count >= 0 AND attempt_count <= max_attempts),
    -- The claim fields exist exactly while a message is claimed: fencing relies
    -- on a delivered, pending or dead row never carrying a token.
    CONSTRAINT pgoutbox_message_claim_check
        CHECK (CASE WHEN status = 'claimed'
                    THEN claimed_by IS NOT NULL AND claim_token IS NOT NULL AND lease_expires_at IS NOT NULL
                    ELSE claimed_by IS NULL AND claim_token IS NULL AND lease_expires_at IS NULL
               END)
) WITH (
    -- Every message is inserted once and updated at least twice (claim, then
    -- ack or nack), so dead tuples pile up at twice the insert rate. The
    -- defaults (20% of the table) would let a 10M-row table collect 2M dead
    -- tuples, and their dead entries in the claim indexes, before a vacuum.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- Claim, first step: pending messages of one (scope, lane, target) in the
-- order they are handed out. Holds only pending rows, so delivered history
-- never slows a claim.
CREATE INDEX pgoutbox_message_due_idx
    ON pgoutbox_message (scope, lane, target, available_at, id)
    WHERE status = 'pending';

-- Claim, second step: claimed messages by lease expiry, so a claim finds
-- expired leases (crashed consumers) with a range scan over in-flight rows only.
CREATE INDEX pgoutbox_message_lease_idx
    ON pgoutbox_message (scope, lane, target, lease_expires_at)
    WHERE status = 'claimed';

-- Dedupe: a key is unique per (scope, lane, target) for as long as its row
-- exists, whatever its status; purging the row frees the key.
CREATE UNIQUE INDEX pgoutbox_message_dedupe_key_idx
    ON pgoutbox_message (scope, lane, target, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

-- Dead letters for listing and redrive. Small by nature, so cheap to keep.
CREATE INDEX pgoutbox_message_dead_letter_idx
    ON pgoutbox_message (scope, lane, target, id)
    WHERE status = 'dead_letter';

COMMENT ON TABLE pgoutbox_message IS 'pgoutbox: transactional outbox messages';
COMMENT ON COLUMN pgoutbox_message.scope IS 'tenant scope; empty for the unscoped store';
COMMENT ON COLUMN pgoutbox_message.claim_token IS 'fencing token of the current claim; ack, nack and lease extension must present it';

-- +goose Down
DROP TABLE pgoutbox_message;
