#!/usr/bin/env bash
# Prints the path of a pgbouncer binary, installing Debian's package first if
# there is none. Used by `make test-pgbouncer`.
set -euo pipefail
if command -v pgbouncer >/dev/null 2>&1; then
	command -v pgbouncer
	exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "pgbouncer.sh: installing Debian's pgbouncer package" >&2
"${sudo[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq pgbouncer >&2
# The package starts a service on port 6432; the test runs its own.
"${sudo[@]}" service pgbouncer stop >/dev/null 2>&1 || true
command -v pgbouncer
