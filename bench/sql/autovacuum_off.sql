-- While a run measures plans made on statistics it chose, no autoanalyze
-- may replace them (reset.sql turns autovacuum back on).
ALTER TABLE pgoutbox_message SET (autovacuum_enabled = off);
