-- Whether pg_stat_statements is loaded (it needs shared_preload_libraries)
-- and installed in this database.
SELECT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
       AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS available;
