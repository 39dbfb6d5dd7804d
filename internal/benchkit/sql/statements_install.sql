-- The benchmark's evidence uses pg_stat_statements where the server loads it.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
