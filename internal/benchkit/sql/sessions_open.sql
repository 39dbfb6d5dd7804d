-- Sessions of this benchmark still connected, other than this one. Zero means
-- every session the last run used has exited and flushed its statistics.
SELECT count(*)::bigint AS sessions
FROM pg_stat_activity
WHERE application_name = @application_name::text AND pid <> pg_backend_pid();
