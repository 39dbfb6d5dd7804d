-- name: NotifyListen :exec
-- Subscribes the session to the channel the enqueue statements notify on
-- (see MessageInsert). Postgres delivers a notification only after the
-- notifying transaction commits, so a woken relay always finds the message.
LISTEN pgoutbox;
