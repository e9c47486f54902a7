#!/usr/bin/env bash
# Bootstrap a local Debian bookworm base image (python3, venv, iproute2, iptables) with debootstrap
# and `docker import`, tagged by the hash of its inputs so it is built once per engine.
# Prints the image reference on stdout (last line). Needs root (debootstrap) on the host.
set -euo pipefail

SUITE="${APIARY_BASE_SUITE:-bookworm}"
MIRROR="$("$(dirname "$0")/debian-mirror.sh")"   # $APIARY_DEBIAN_MIRROR, else the host's apt sources
PACKAGES="python3,python3-venv,ca-certificates,iproute2,iptables"
RECIPE_VERSION="1"   # bump when the recipe below changes
REPO="${APIARY_BASE_REPO:-apiary-base}"

HASH="$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$MIRROR" "$PACKAGES" minbase | sha256sum | cut -c1-12)"
IMAGE="${REPO}:${SUITE}-${HASH}"

log() { echo "[build-base] $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "base image $IMAGE already present"
  echo "$IMAGE"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq debootstrap >&2
fi

WORK="$(mktemp -d /var/tmp/apiary-base.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

log "debootstrap $SUITE minbase ($PACKAGES) into $ROOTFS"
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  log "debootstrap failed; last lines:"; tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
# Slim the rootfs: package caches, docs and apt lists are not needed at runtime.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
log "debootstrap done in $(( $(date +%s) - start )) s; importing as $IMAGE"

tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'LABEL io.apiary.project=apiary' \
  --change "LABEL io.apiary.base.inputs=$HASH" \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >&2
log "imported $IMAGE"
echo "$IMAGE"
