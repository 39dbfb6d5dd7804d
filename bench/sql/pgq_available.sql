-- Whether the server can install PgQ (Debian's postgresql-15-pgq3; the
-- official postgres image has no PgQ).
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq') AS available;
