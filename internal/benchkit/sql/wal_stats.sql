-- Cumulative WAL records and full-page images (PostgreSQL 14+). Backends add
-- theirs when they flush their statistics: at exit, or about a second after
-- going idle; the harness closes its sessions before reading.
SELECT wal_records::bigint AS records, wal_fpi::bigint AS fpi FROM pg_stat_wal;
