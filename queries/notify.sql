-- name: NotifyListen :exec
-- Subscribes the session to the channel the enqueue statements notify on
-- (internal/wakeup.Channel). Postgres delivers a notification only after the
-- notifying transaction commits, so a woken relay always finds the message.
LISTEN pgoutbox;

-- name: NotifySend :exec
-- A notification of its own, for an enqueue that committed without one when
-- the relays' follow-up to the last notification may already have passed
-- (see internal/wakeup.Limiter).
SELECT pg_notify(@channel::text, @payload::text);

-- name: XactStatuses :many
-- Whether each of the caller transactions in @xacts (ids from
-- pg_current_xact_id) has committed: 'committed', 'aborted', 'in progress',
-- or '' once the id is too old for the server to know. An id at or past
-- this statement's snapshot xmax is reported in progress without asking
-- pg_xact_status, which raises an error for an id the server has not
-- assigned yet (the transaction ran on another server, or on a primary that
-- failed over to a standby behind it) and would fail the whole read; such a
-- transaction stays pending until the watcher gives up on it. The commit
-- watcher asks this to send a caller transaction's notification after it
-- commits (see outbox/commitwatch.go).
SELECT x.xact::bigint AS xact,
       coalesce(CASE WHEN x.xact::text::xid8 >= pg_snapshot_xmax(pg_current_snapshot())
                     THEN 'in progress'
                     ELSE pg_xact_status(x.xact::text::xid8)::text
                END, '')::text AS status
FROM unnest(@xacts::bigint[]) AS x(xact);

-- name: NotifySendMany :exec
-- The commit watcher's notifications of one round, in one transaction: every
-- notifying commit holds NOTIFY's database-wide lock through its WAL flush.
SELECT count(pg_notify(@channel::text, p.payload))
FROM unnest(@payloads::text[]) AS p(payload);
