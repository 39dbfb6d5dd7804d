-- Start the next run at the beginning of a checkpoint cycle, so that no run
-- pays for the WAL an earlier one wrote.
CHECKPOINT;
