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
