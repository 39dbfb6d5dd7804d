#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server from the machine's own binaries (no
# Docker) and prints `export OUTBOX_TEST_DATABASE_URL=...` for eval. A
# fallback for machines whose Docker engine cannot run the test image; the
# server lives in a temporary directory and stops with `pg_ctl -D DIR stop`
# (the directory is printed on stderr).
set -euo pipefail

bindir="${PG_BINDIR:-}"
if [ -z "$bindir" ]; then
	for d in /usr/lib/postgresql/*/bin; do bindir="$d"; done
fi
if [ ! -x "$bindir/initdb" ]; then
	echo "local-postgres: no PostgreSQL binaries found (set PG_BINDIR)" >&2
	exit 1
fi
port="${PGPORT_LOCAL:-55432}"
dir="$(mktemp -d /tmp/pgoutbox-pg.XXXXXX)"
chmod 755 "$dir"
as_pg=()
if [ "$(id -u)" = 0 ]; then
	# initdb and postgres refuse to run as root.
	chown postgres:postgres "$dir"
	as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$bindir/initdb" --no-sync -U postgres --auth=trust -D "$dir/data" >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
	-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >&2
echo "local-postgres: server in $dir/data on port $port" >&2
echo "export OUTBOX_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
