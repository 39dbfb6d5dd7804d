-- Checkpoints so far, as checkpoints.sql reads them, from PostgreSQL 17 on
-- (pg_stat_checkpointer; backends' own writes moved to pg_stat_io).
SELECT num_timed::bigint AS timed,
       num_requested::bigint AS requested,
       buffers_written::bigint AS buffers_written,
       0::bigint AS backend_buffers_written
FROM pg_stat_checkpointer;
