#!/usr/bin/env bash
# Build the project image with podman, offline from any registry: the Debian base image is
# made locally with mmdebstrap from the apt mirror this machine already uses.
#   bash .ci/podman.sh            # -> localhost/minivess-bundle:<version>
# Environment: TAG (default localhost/minivess-bundle:<version from pyproject.toml>),
#   BASE (default localhost/debian:bookworm-slim), EXTRAS (default workflow),
#   CA (host CA bundle handed to pip during the build), MIRROR/SECMIRROR (apt mirrors),
#   PODMAN_WORK (default /var/tmp/minivess-podman: containers.conf and scratch),
#   SOURCE_DATE_EPOCH (default: the commit's time) fixes every timestamp in the image,
#   REPRODUCE (default 1 when CI is set): build a second time, both without cache, and fail
#   unless both image ids are equal; the ids go to $PODMAN_WORK/reproducible.txt, which
#   tests/test_container.py checks.
# Afterwards, run podman with CONTAINERS_CONF=$PODMAN_WORK/containers.conf (.ci/run does),
# so that the tests use the same runtime settings.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${TAG:-localhost/minivess-bundle:$VERSION}
BASE=${BASE:-localhost/debian:bookworm-slim}
EXTRAS=${EXTRAS:-workflow}
WORK=${PODMAN_WORK:-/var/tmp/minivess-podman}
# The mirrors are the ones apt is configured with here (deb822 sources, else sources.list);
# no mirror host is spelled in this repository (tests/test_registry_hosts.py).
SRC=/etc/apt/sources.list.d/debian.sources
mirror() { # $1: security|main -> the first such URI in apt's sources (deb822, then one-line)
  {
    awk '/^URIs:/ {print $2}' "$SRC" 2>/dev/null || true
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; next}}' \
      /etc/apt/sources.list 2>/dev/null || true
  } | if [ "$1" = security ]; then grep -m1 security; else grep -m1 -v security; fi || true
}
MIRROR=${MIRROR:-$(mirror main)}
SECMIRROR=${SECMIRROR:-$(mirror security)}
CA=${CA:-/etc/ssl/certs/ca-certificates.crt}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
REPRODUCE=${REPRODUCE:-${CI:+1}}
COMMIT=$(git rev-parse HEAD 2>/dev/null || true) # once: both REPRODUCE builds get the same
T0=$(date +%s)
log() { echo "[podman.sh +$(($(date +%s) - T0))s] $*"; }
mkdir -p "$WORK"

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman runc mmdebstrap >/dev/null
  log "installed podman runc mmdebstrap"
fi

# Private containers.conf (nothing in /etc is changed):
#  - runc: crun 1.8.1 refuses hybrid cgroup v1+v2 hosts ("cgroups in hybrid mode not supported")
#  - ulimits: root here lacks CAP_SYS_RESOURCE; podman's default nofile=1048576 fails in setrlimit
NOFILE=$(ulimit -Hn)
NPROC=$(ulimit -Hu)
{ [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; } && NPROC=32768
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$WORK/containers.conf

# 1. Base image from the Debian mirror apt already uses (no registry pull).
if ! podman image exists "$BASE"; then
  if [ -z "$MIRROR" ] || [ -z "$SECMIRROR" ]; then
    echo "podman.sh: no Debian mirror in apt's sources ($SRC, /etc/apt/sources.list):" \
      "set MIRROR and SECMIRROR to build the base image $BASE" >&2
    exit 1
  fi
  mmdebstrap --quiet --variant=minbase --mode=root --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$WORK/rootfs.tar" "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECMIRROR bookworm-security main"
  podman import --change 'CMD ["/bin/bash"]' "$WORK/rootfs.tar" "$BASE" >/dev/null
  rm -f "$WORK/rootfs.tar"
  log "base image $BASE built"
fi

# 2. The project image. The host CA bundle is bind-mounted for RUN steps only.
CAARGS=()
[ -r "$CA" ] && CAARGS=(-v "$CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
# The OCI source label: the origin's URL when it is a public one (not a local path).
SOURCE=$(git remote get-url origin 2>/dev/null || true)
case "$SOURCE" in https://*) ;; *) SOURCE="" ;; esac
# --timestamp: the created time and every file's mtime in the new layers are
# SOURCE_DATE_EPOCH, so the same tree gives the same image id (see Containerfile).
build() {
  podman build --pull=never "${CAARGS[@]}" --timestamp "$SOURCE_DATE_EPOCH" "$@" \
    --build-arg SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
    --build-arg BASE="$BASE" --build-arg EXTRAS="$EXTRAS" \
    --build-arg VERSION="$VERSION" --build-arg SOURCE="$SOURCE" \
    --build-arg GIT_COMMIT="$COMMIT" -f Containerfile .
}
if [ "${REPRODUCE:-}" = 1 ]; then
  build --no-cache -t "$TAG"
  log "image $TAG built (no cache)"
  build --no-cache -t "$TAG-rebuild"
  log "image $TAG-rebuild built (no cache)"
  FIRST=$(podman image inspect --format '{{.Id}}' "$TAG")
  SECOND=$(podman image inspect --format '{{.Id}}' "$TAG-rebuild")
  podman rmi "$TAG-rebuild" >/dev/null
  echo "$FIRST $SECOND" >"$WORK/reproducible.txt"
  if [ "$FIRST" != "$SECOND" ]; then
    echo "two no-cache builds differ: $FIRST vs $SECOND (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)" >&2
    exit 1
  fi
  log "reproducible: two no-cache builds give image id $FIRST"
else
  build -t "$TAG"
  log "image $TAG built"
fi
podman image inspect --format '{{.Id}} {{.Size}} bytes' "$TAG"
