#!/usr/bin/env bash
# Build the etcd example's image, apiary/etcd:${APIARY_IMAGE_TAG:-local}, on the base Apiary's images use:
# $APIARY_BASE_IMAGE when set, else the bootstrapped bookworm base scripts/build-base.sh prints (built
# once per engine). The package layer is cached, so a rebuild takes seconds. Prints the image ref on
# stdout (last line); progress and errors go to stderr. Needs network to deb.debian.org from the build.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
IMAGE="apiary/etcd:${APIARY_IMAGE_TAG:-local}"
log() { echo "[etcd-build] $*" >&2; }

BASE="${APIARY_BASE_IMAGE:-}"
if [[ -z "$BASE" ]]; then
  BASE="$("$ROOT/scripts/build-base.sh" | tail -n 1)"
fi
log "base $BASE"

start=$(date +%s%N)
export DOCKER_BUILDKIT=0   # the legacy builder, as scripts/build-images.sh: no buildx plugin needed
if ! out="$(docker build -q --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" -f "$HERE/Dockerfile" "$HERE" 2>&1)"; then
  log "docker build of $IMAGE failed (does the build reach deb.debian.org?):"
  echo "$out" | tail -n 40 >&2
  exit 1
fi
log "built $IMAGE ($(echo "$out" | tail -n 1 | cut -c1-19)) in $(( ($(date +%s%N) - start) / 1000000 )) ms"
# The image this build replaced, left untagged: remove this example's dangling images only.
docker image prune -f --filter label=io.apiary.example=etcd >/dev/null 2>&1 || true
echo "$IMAGE"
