-- What pgqd runs every ticker_period: a tick for every queue that needs one
-- (500 new events, or 3 seconds since the last tick with any).
SELECT pgq.ticker() AS ticked;
