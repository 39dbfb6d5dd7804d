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
-- or '' once the id is too old for the server to know. The commit watcher
-- asks this to send a caller transaction's notification after it commits
-- (see outbox/commitwatch.go).
SELECT x.xact::bigint AS xact, coalesce(pg_xact_status(x.xact::text::xid8)::text, '')::text AS status
FROM unnest(@xacts::bigint[]) AS x(xact);
