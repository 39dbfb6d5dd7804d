-- +goose Up

-- Leave half of each new page free. Every message is written three times:
-- inserted, then updated by its claim (or lock batch) and by its ack or
-- nack. An update whose new row version fits on the page of the old one is
-- logged as the bytes that changed (PostgreSQL compresses the common prefix
-- and suffix of the two versions only on the same page); on a full page the
-- whole version goes to another page, and into the WAL. Half a page of room
-- cut the WAL per delivered message by a quarter to two fifths in the
-- burn-down, for about the same table size: a full page has to put the new
-- versions somewhere else anyway (BENCHMARKS.md, "Figures behind design
-- choices"). It also leaves the room a claim would need to be a HOT update.
--
-- Online: ALTER TABLE ... SET (fillfactor) rewrites nothing (pages written
-- from now on are filled to half, older ones stay as they are) and takes a
-- SHARE UPDATE EXCLUSIVE lock, which blocks no reads or writes; it waits
-- for a running VACUUM, at most lock_timeout, and outbox.Migrate runs it
-- again after a lock timeout.
SET LOCAL lock_timeout = '2s';
ALTER TABLE pgoutbox_message SET (fillfactor = 50);

-- +goose Down
SET LOCAL lock_timeout = '2s';
ALTER TABLE pgoutbox_message RESET (fillfactor);
