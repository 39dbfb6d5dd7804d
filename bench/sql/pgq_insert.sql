-- A producer's batch: pgq.insert_event for each payload, in the caller's
-- transaction (one statement, one round trip, as EnqueueMany and River's
-- InsertMany), returning the event ids. Positional parameter: the payloads.
SELECT pgq.insert_event('pgoutbox_bench', 'order_placed', p) AS id FROM unnest($1::text[]) AS p;
