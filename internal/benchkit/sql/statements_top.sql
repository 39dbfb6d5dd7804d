-- The statements that took the most time in this database since the last
-- reset, with what each execution read and wrote on average; the harness's
-- own readings of the statistics views are left out.
SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query,
       calls::bigint AS calls,
       total_exec_time AS total_ms,
       total_exec_time / greatest(calls, 1) AS mean_ms,
       rows::float8 / greatest(calls, 1) AS rows_per_call,
       (shared_blks_hit + shared_blks_read)::float8 / greatest(calls, 1) AS blocks_per_call,
       wal_bytes::float8 / greatest(calls, 1) AS wal_bytes_per_call
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%pg\_stat\_%' AND query NOT LIKE '%pg\_current\_wal%'
ORDER BY total_exec_time DESC
LIMIT @max::int;
