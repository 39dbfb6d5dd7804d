-- The batch is done: the consumer's position moves to its end tick.
SELECT pgq.finish_batch($1) AS finished;
