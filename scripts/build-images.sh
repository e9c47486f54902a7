#!/usr/bin/env bash
# Build the three Apiary images (orchestrator, worker-manager, mock-worker) from one shared base and
# dependency layer. Base: $APIARY_BASE_IMAGE (default python:3.11-slim) when local or pullable,
# else a debootstrapped bookworm base (scripts/build-base.sh). Tags: apiary/<service>:${APIARY_IMAGE_TAG:-local}.
# Usage: scripts/build-images.sh [BUILD_CONTEXT]   (context defaults to the repository root)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONTEXT="${1:-$ROOT}"
TAG="${APIARY_IMAGE_TAG:-local}"
BASE="${APIARY_BASE_IMAGE:-python:3.11-slim}"
PULL_TIMEOUT="${APIARY_PULL_TIMEOUT_S:-20}"
log() { echo "[build-images] $*" >&2; }

"$ROOT/scripts/build-wheelhouse.sh"

# Staged build context: the code plus its bytecode compiled here (checked-hash .pyc), so containers
# start without compiling the services each time (~0.7 s per process on a loaded 2-core VM).
# The compiled tree persists in $CONTEXT/.build/services (only changed files are recompiled: .pyc bytes
# are not reproducible, and the code layer must stay cached while nothing changed). Builds serialize.
mkdir -p "$CONTEXT/.build"
exec 9>"$CONTEXT/.build/build.lock"
flock 9
STAGE="$(mktemp -d "$CONTEXT/.build/context.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
PY="${APIARY_HOST_PYTHON:-python3}"
COMPILED="$CONTEXT/.build/services"
if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  "$PY" "$ROOT/scripts/stage_bytecode.py" "$CONTEXT/services" "$COMPILED" >/dev/null
else
  log "host python is not 3.11: images get no precompiled bytecode (they still work)"
  rm -rf "$COMPILED"; cp -r "$CONTEXT/services" "$COMPILED"
  find "$COMPILED" -name __pycache__ -prune -exec rm -rf {} +
fi
mkdir -p "$STAGE/requirements" "$STAGE/docker"
cp -a "$COMPILED" "$STAGE/services"
cp -a "$ROOT/docker/healthcheck.py" "$STAGE/docker/"
cp -a "$ROOT/.wheelhouse" "$STAGE/.wheelhouse"
cp -a "$CONTEXT/requirements/services.lock" "$STAGE/requirements/"
printf '*\n!services/\n!docker/\n!.wheelhouse/\n!requirements/services.lock\n' > "$STAGE/.dockerignore"
find "$STAGE" -exec touch -h -d @1 {} +   # fixed mtimes: the layer cache keys on content only

if docker image inspect "$BASE" >/dev/null 2>&1; then
  log "base $BASE (local)"
elif timeout "$PULL_TIMEOUT" docker pull -q "$BASE" >/dev/null 2>&1; then
  log "base $BASE (pulled)"
else
  log "base $BASE is neither local nor pullable: bootstrapping a local Debian base"
  BASE="$("$ROOT/scripts/build-base.sh" | tail -n 1)"
  log "base $BASE (bootstrapped)"
fi

# iproute2/iptables (fault injection) are in the bootstrapped base; a base without them gets them in a
# derived image, built once and tagged by the base's id (one more layer, on that path only).
if [[ -z "$(docker image inspect -f '{{index .Config.Labels "io.apiary.base.inputs"}}' "$BASE" 2>/dev/null)" ]] \
   && ! docker run --rm --entrypoint sh "$BASE" -c 'command -v ip && command -v iptables' >/dev/null 2>&1; then
  TOOLS="apiary-base-tools:$(docker image inspect -f '{{.Id}}' "$BASE" | cut -c8-19)"
  if ! docker image inspect "$TOOLS" >/dev/null 2>&1; then
    log "base $BASE lacks iproute2/iptables: adding them ($TOOLS)"
    printf 'FROM %s\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 iptables && rm -rf /var/lib/apt/lists/*\nLABEL io.apiary.project=apiary\n' "$BASE" \
      | DOCKER_BUILDKIT=0 docker build -q -t "$TOOLS" - >/dev/null \
      || { log "ERROR: could not add iproute2/iptables to $BASE (iptables and partition scenarios need them)"; exit 1; }
  fi
  BASE="$TOOLS"
fi

export DOCKER_BUILDKIT=0   # the legacy builder needs no buildx plugin and shares layers across files
# The shared runtime: its `deps` stage tagged first (the prune below removes this project's dangling
# images, and the cache must keep the stage), then the runtime, then the three thin service images.
build() {   # build NAME DOCKERFILE [docker build args...]
  local name="$1" file="$2" start out; shift 2
  start=$(date +%s%N)
  if ! out="$(docker build -q "$@" -f "$ROOT/$file" -t "$name" "$STAGE" 2>&1)"; then
    log "docker build of $name ($file) failed:"; echo "$out" | tail -n 40 >&2; exit 1
  fi
  log "built $name ($(echo "$out" | tail -n1 | cut -c1-19)) in $(( ($(date +%s%N) - start) / 1000000 )) ms"
}
build "apiary/deps:$TAG" Dockerfile.runtime --target deps --build-arg "BASE_IMAGE=$BASE"
build "apiary/runtime:$TAG" Dockerfile.runtime --target runtime --build-arg "BASE_IMAGE=$BASE"
for svc in orchestrator worker-manager mock-worker; do
  build "apiary/$svc:$TAG" "Dockerfile.$svc" --build-arg "RUNTIME_IMAGE=apiary/runtime:$TAG"
done
# Old code layers left untagged by this build: remove this project's dangling images only.
docker image prune -f --filter label=io.apiary.project=apiary >/dev/null 2>&1 || true
