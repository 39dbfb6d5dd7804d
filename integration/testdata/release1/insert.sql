-- The first release's statement, as its sqlc code sent it (release 1,
-- before migration 2): the online-migration test runs it as a relay of that
-- release would, while the table migrates.
-- name: MessageInsert :one
WITH inserted AS (
    INSERT INTO pgoutbox_message (
        scope, lane, target, payload, available_at, max_attempts, created_at, updated_at
    ) VALUES (
        $2::text,
        $3::text,
        $4::text,
        $5::jsonb,
        coalesce($6::timestamptz, $7::timestamptz, now()),
        $8::integer,
        coalesce($7::timestamptz, now()),
        coalesce($7::timestamptz, now())
    )
    RETURNING id, scope, lane, target, payload, dedupe_key, status, available_at, attempt_count, max_attempts, claimed_by, claim_token, lease_expires_at, last_error, created_at, updated_at
)
SELECT pgoutbox_message.id, pgoutbox_message.scope, pgoutbox_message.lane, pgoutbox_message.target, pgoutbox_message.payload, pgoutbox_message.dedupe_key, pgoutbox_message.status, pgoutbox_message.available_at, pgoutbox_message.attempt_count, pgoutbox_message.max_attempts, pgoutbox_message.claimed_by, pgoutbox_message.claim_token, pgoutbox_message.lease_expires_at, pgoutbox_message.last_error, pgoutbox_message.created_at, pgoutbox_message.updated_at,
       CASE WHEN $1::boolean
            THEN pg_notify('pgoutbox', pgoutbox_message.scope || chr(31) || pgoutbox_message.lane || chr(31) || pgoutbox_message.target) IS NOT NULL
            ELSE false
       END AS notified
FROM inserted AS pgoutbox_message
