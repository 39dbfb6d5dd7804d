#!/usr/bin/env bash
# Prints the name of a PostgreSQL image that the integration suite can run,
# making one available first when needed:
#
#   1. $OUTBOX_TEST_POSTGRES_IMAGE (default: the pinned official tag) if the
#      Docker engine already has it or can pull it;
#   2. otherwise an equivalent image built here from Debian's postgresql-15
#      package with mmdebstrap (no container registry needed), tagged
#      $OUTBOX_LOCAL_POSTGRES_IMAGE, reused on later runs. It also carries
#      postgresql-15-pgq3, PgQ, the log-based queue that `make bench` measures
#      beside pgoutbox and River (the official image has no PgQ; the bench
#      then reports PgQ as not available).
#
# Progress goes to stderr; stdout carries only the image name.
set -euo pipefail

official="${OUTBOX_TEST_POSTGRES_IMAGE:-postgres:15.10-bookworm}"
# The tag's suffix is the image's revision: bump it when the image's contents
# change, so that machines holding an older build make a new one.
# 15-2: adds postgresql-15-pgq3.
local_tag="${OUTBOX_LOCAL_POSTGRES_IMAGE:-pgoutbox/postgres-debian:15-2}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "postgres-image: $*" >&2; }

if ! command -v docker >/dev/null 2>&1; then
	log "docker is not installed; cannot provide a PostgreSQL image"
	exit 1
fi
if ! docker info >/dev/null 2>&1; then
	log "the Docker engine is not reachable (docker info failed)"
	exit 1
fi

if docker image inspect "$official" >/dev/null 2>&1; then
	echo "$official"
	exit 0
fi
log "pulling $official"
if timeout 120 docker pull --quiet "$official" >/dev/null 2>&1; then
	echo "$official"
	exit 0
fi
log "cannot pull $official; using a local build from Debian packages instead"

# PGDATA must be a volume, as in the official image: left in the container's
# own filesystem it is written through the storage driver (fuse-overlayfs on
# some engines), which cost a quarter of pgbench's TPS and made benchmark runs
# of the continuous scenario range from 1,070 to 16,441 msg/s. Images built
# before that are rebuilt.
if [ "$(docker image inspect --format '{{json .Config.Volumes}}' "$local_tag" 2>/dev/null || true)" = '{"/var/lib/postgresql/data":{}}' ]; then
	echo "$local_tag"
	exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
	log "installing mmdebstrap"
	sudo=()
	[ "$(id -u)" = 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq mmdebstrap >&2
fi

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "building the root filesystem (about a minute)"
excludes=(
	'/usr/lib/x86_64-linux-gnu/libLLVM*'
	'/usr/lib/x86_64-linux-gnu/libz3*'
	'/usr/lib/postgresql/15/lib/llvmjit*'
	'/usr/lib/postgresql/15/lib/bitcode/*'
	'/usr/share/doc/*'
	'/usr/share/man/*'
	'/usr/share/info/*'
	'/usr/share/locale/*'
)
dpkgopts=()
for e in "${excludes[@]}"; do dpkgopts+=("--dpkgopt=path-exclude=$e"); done

DEBIAN_FRONTEND=noninteractive mmdebstrap --variant=apt --include=postgresql-15,postgresql-15-pgq3,mawk \
	"${dpkgopts[@]}" \
	--essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
	--customize-hook="copy-in $here/postgres-image/docker-entrypoint.sh /usr/local/bin" \
	--customize-hook='rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*' \
	bookworm "$work/rootfs.tar.gz" "$sources" >&2

log "importing the image as $local_tag"
docker import \
	--change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
	--change 'CMD ["postgres"]' \
	--change 'ENV PGDATA=/var/lib/postgresql/data' \
	--change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'EXPOSE 5432' \
	--change 'VOLUME /var/lib/postgresql/data' \
	"$work/rootfs.tar.gz" "$local_tag" >&2
echo "$local_tag"
