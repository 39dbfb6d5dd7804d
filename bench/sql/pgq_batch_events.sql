-- Every event of a batch. Positional parameter: the batch id.
SELECT ev_id AS id, ev_data AS data FROM pgq.get_batch_events($1);
