#!/usr/bin/env bash
# Installs the named Debian packages that are missing, and only those:
#
#	scripts/debian-deps.sh rabbitmq-server [more packages...]
#
# Used by `make test` and .ci/run, so that a fresh Debian machine gets what the
# tests need and a prepared one pays a dpkg query. Needs root (or sudo) only
# when something is missing. Services a package starts on installation are
# stopped and disabled again: tests run their own instances on ports of their
# own, and a system instance would hold the default port. apt waits for a
# dpkg lock held by another installation instead of failing.
set -euo pipefail

missing=()
for pkg in "$@"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "debian-deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
# policy-rc.d exit 101 keeps invoke-rc.d from starting services during the
# installation (on machines without systemd the package would otherwise start
# one, and it would hold its default port).
policy=/usr/sbin/policy-rc.d
own_policy=false
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	own_policy=true
fi
status=0
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2 || status=$?
if $own_policy; then
	"${sudo[@]}" rm -f "$policy"
fi
[ "$status" -eq 0 ] || exit "$status"
for pkg in "${missing[@]}"; do
	# Anything that started anyway (systemd machines ignore policy-rc.d in
	# some paths) is stopped and kept from starting at boot.
	if [ -e "/etc/init.d/$pkg" ]; then
		"${sudo[@]}" service "$pkg" stop >/dev/null 2>&1 || true
		if command -v systemctl >/dev/null 2>&1; then
			"${sudo[@]}" systemctl disable --now "$pkg" >/dev/null 2>&1 || true
		fi
	fi
done
