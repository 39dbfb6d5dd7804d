-- Before each run: an empty table, vacuumed, so that no run pays for an
-- earlier one's dead rows (the harness checkpoints afterwards).
TRUNCATE pgoutbox_message;
VACUUM ANALYZE pgoutbox_message;
