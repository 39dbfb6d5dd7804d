-- The consumer's next batch (the events between its last tick and the
-- next), or NULL when there is none yet.
SELECT pgq.next_batch('pgoutbox_bench', 'bench') AS batch_id;
