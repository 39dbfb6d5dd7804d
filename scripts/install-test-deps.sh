#!/usr/bin/env bash
# Installs the Debian packages the test suite needs and the machine lacks:
# today Chromium, for the dashboard's browser test (it drives Debian's
# chromium and never downloads a browser). Runs apt-get only as root and
# only when something is missing; otherwise it says what to install, and
# the test that needs it fails with the same advice.
set -euo pipefail

missing=()
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/lib/chromium/chromium ]; then
	missing+=(chromium)
fi
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "install-test-deps: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
	exit 0
fi
echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
