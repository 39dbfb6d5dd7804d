-- Before each run: a fresh queue (dropping it drops its event tables, as a
-- TRUNCATE would) with the benchmark's consumer registered at its head.
-- The queue keeps PgQ's defaults: a tick after 500 events or 3 seconds.
SELECT pgq.drop_queue(queue_name, true) FROM pgq.queue WHERE queue_name = 'pgoutbox_bench';
SELECT pgq.create_queue('pgoutbox_bench');
SELECT pgq.register_consumer('pgoutbox_bench', 'bench');
VACUUM ANALYZE pgq.tick;
VACUUM ANALYZE pgq.subscription;
