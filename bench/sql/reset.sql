-- Before each run: empty pgoutbox's and River's tables (River's own bench
-- truncates and vacuums its table too), so that every run starts alike.
TRUNCATE pgoutbox_message;
-- A run that measured plans on chosen statistics turned autovacuum off.
ALTER TABLE pgoutbox_message RESET (autovacuum_enabled);
TRUNCATE river_job;
VACUUM ANALYZE pgoutbox_message;
VACUUM ANALYZE river_job;
