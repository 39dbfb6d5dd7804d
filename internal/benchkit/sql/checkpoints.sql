-- Checkpoints so far, timed (checkpoint_timeout) and requested (max_wal_size
-- reached, or a CHECKPOINT command), with the buffers they wrote; PostgreSQL
-- 13 to 16 keep these in pg_stat_bgwriter.
SELECT checkpoints_timed::bigint AS timed,
       checkpoints_req::bigint AS requested,
       buffers_checkpoint::bigint AS buffers_written,
       buffers_backend::bigint AS backend_buffers_written
FROM pg_stat_bgwriter;
