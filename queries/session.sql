-- name: SessionIdleTimeoutSet :exec
-- Lock mode: bounds how long the batch's transaction may sit idle before the
-- server ends it (releasing its row locks and the xmin horizon it holds), for
-- this transaction only. It overrides a shorter server or role setting that
-- would end a healthy batch while its handlers run.
SELECT set_config('idle_in_transaction_session_timeout', concat(@timeout_ms::bigint, 'ms'), true);

-- name: SessionReadOnly :one
-- Whether the session can write. After a failover the old primary may keep
-- answering on existing sessions, read-only; a LISTEN there hears nothing
-- ever again, so the relay's notifier reconnects when this says true.
SELECT current_setting('transaction_read_only') = 'on' AS read_only;
