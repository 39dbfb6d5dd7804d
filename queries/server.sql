-- name: ServerSettings :one
-- The settings a benchmark figure depends on, reported next to it.
SELECT current_setting('server_version')::text AS server_version,
       current_setting('fsync')::text AS fsync,
       current_setting('synchronous_commit')::text AS synchronous_commit,
       current_setting('full_page_writes')::text AS full_page_writes,
       current_setting('shared_buffers')::text AS shared_buffers;
