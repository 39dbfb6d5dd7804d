-- Make the next pgq.ticker() tick even with few new events; returns the last
-- tick id (PgQ's documented way to wait for a tick: call it until that
-- changes).
SELECT pgq.force_tick('pgoutbox_bench') AS last_tick;
