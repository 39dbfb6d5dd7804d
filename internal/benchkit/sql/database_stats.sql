-- This database's transaction counters: commits, rollbacks (an aborted
-- claim, a deadlock victim) and deadlocks detected.
SELECT xact_commit::bigint AS commits,
       xact_rollback::bigint AS rollbacks,
       deadlocks::bigint AS deadlocks
FROM pg_stat_database
WHERE datname = current_database();
