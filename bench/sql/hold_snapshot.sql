-- The held snapshot: a REPEATABLE READ transaction takes its snapshot at its
-- first statement and keeps it until it ends, so vacuum can remove no row
-- version that died after it (the xmin horizon stays put).
SELECT 1 AS one;
