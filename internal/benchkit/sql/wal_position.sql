-- The WAL insert position as a byte offset: the difference of two readings is
-- every byte of WAL the whole server wrote between them (all sessions and
-- databases, autovacuum and checkpoints included, page headers too). The
-- insert position, not pg_current_wal_lsn (the write position), which lags
-- behind asynchronous commits.
SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint AS position;
