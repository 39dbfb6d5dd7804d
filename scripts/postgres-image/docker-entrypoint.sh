#!/bin/bash
# Entrypoint of the locally built PostgreSQL image. It behaves like the official
# image's entrypoint as far as testcontainers-go's postgres module relies on it:
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, initdb on first start,
# /docker-entrypoint-initdb.d scripts, `postgres -c k=v ...` arguments, logs on
# stdout, and the "ready to accept connections" line twice on a first start
# (once from a socket-only server used for initialisation, once from the real one).
set -Eeo pipefail

PGBIN=/usr/lib/postgresql/15/bin
export PATH="$PGBIN:$PATH"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
	# docker stop sends SIGTERM, which PostgreSQL treats as a "smart" shutdown that
# waits for every client to leave. The official image sets STOPSIGNAL SIGINT for
# a fast shutdown; `docker import` cannot set a stop signal, so translate here.
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null' QUIT
status=0
while true; do
	wait "$pid" && status=0 || status=$?
	# wait returns early (status > 128) when a trapped signal arrives; keep
	# waiting for the server itself to exit.
	kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
fi

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown -R postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 2775 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	if [ -z "$POSTGRES_PASSWORD" ]; then
		echo >&2 'error: POSTGRES_PASSWORD must be set (this image allows no passwordless remote access)'
		exit 1
	fi
	pwfile="$(mktemp)"
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
		--auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-sync -D "$PGDATA"
	rm -f "$pwfile"
	printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\njit = off\n" >>"$PGDATA/postgresql.conf"

	# Socket-only server for initialisation, as the official image does.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start
	psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --host /var/run/postgresql)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<-'SQL'
			CREATE DATABASE :"db";
		SQL
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then "$f"; else . "$f"; fi
			;;
		*.sql) "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
		*) ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo 'PostgreSQL init process complete; ready for start up.'
fi

# docker stop sends SIGTERM, which PostgreSQL treats as a "smart" shutdown that
# waits for every client to leave. The official image sets STOPSIGNAL SIGINT for
# a fast shutdown; `docker import` cannot set a stop signal, so translate here.
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null' QUIT
status=0
while true; do
	wait "$pid" && status=0 || status=$?
	# wait returns early (status > 128) when a trapped signal arrives; keep
	# waiting for the server itself to exit.
	kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
