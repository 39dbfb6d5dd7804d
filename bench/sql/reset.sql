-- Before each run: empty pgoutbox's and River's tables (River's own bench
-- truncates and vacuums its table too), so that every run starts alike.
TRUNCATE pgoutbox_message;
TRUNCATE river_job;
VACUUM ANALYZE pgoutbox_message;
VACUUM ANALYZE river_job;
