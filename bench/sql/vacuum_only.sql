-- VACUUM without ANALYZE: the visibility map and the table's size for the
-- planner, its column statistics left as they are.
VACUUM pgoutbox_message;
