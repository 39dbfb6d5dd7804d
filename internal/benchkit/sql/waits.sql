-- What this benchmark's busy sessions are doing right now: a wait event
-- (Lock, LWLock, IO, ...), or running on a CPU when there is none. Sampled
-- during a run, the counts show where sessions spend their time.
SELECT state || ': ' || coalesce(wait_event_type || ' ' || wait_event, 'on CPU') AS activity,
       count(*)::bigint AS sessions
FROM pg_stat_activity
WHERE application_name = @application_name::text AND pid <> pg_backend_pid() AND state <> 'idle'
GROUP BY 1;
