-- A table's counters and sizes (the table by name, schema-qualified if
-- needed). Sizes are pg_table_size (heap, free space map, visibility map,
-- TOAST) and pg_indexes_size (all its indexes).
SELECT coalesce(s.n_live_tup, 0)::bigint AS live_tuples,
       coalesce(s.n_dead_tup, 0)::bigint AS dead_tuples,
       coalesce(s.seq_scan, 0)::bigint AS seq_scans,
       coalesce(s.seq_tup_read, 0)::bigint AS seq_tuples_read,
       coalesce(s.idx_scan, 0)::bigint AS index_scans,
       coalesce(s.n_tup_upd, 0)::bigint AS updates,
       coalesce(s.n_tup_hot_upd, 0)::bigint AS hot_updates,
       coalesce(s.autovacuum_count, 0)::bigint AS autovacuums,
       coalesce(s.autoanalyze_count, 0)::bigint AS autoanalyzes,
       pg_table_size(c.oid)::bigint AS table_bytes,
       pg_indexes_size(c.oid)::bigint AS index_bytes
FROM pg_class c
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = to_regclass(@table_name::text);
