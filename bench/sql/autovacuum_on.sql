-- Autovacuum back on after autovacuum_off.sql.
ALTER TABLE pgoutbox_message RESET (autovacuum_enabled);
