-- +goose NO TRANSACTION
-- +goose Up

-- The due index of release 1 held keyed messages too; claims now read
-- pgoutbox_message_due_unkeyed_idx and pgoutbox_message_key_idx instead.
-- Relays of the previous release still read this one: during a rolling
-- deploy, migrate to version 2 first and run this migration once every relay
-- runs the new release (see the README, "Ordering", rolling deploys).
DROP INDEX CONCURRENTLY IF EXISTS pgoutbox_message_due_idx;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS pgoutbox_message_due_idx
    ON pgoutbox_message (scope, lane, target, available_at, id)
    WHERE status = 'pending';
