#!/usr/bin/env bash
# Make Compose v2 available to the harness when the machine has only v1 (Debian bookworm ships
# docker-compose 1.29): fetch the `docker-compose` 2.x package of Debian's next release from the
# mirror, verify it (InRelease signature checked with gpgv against the host's Debian archive keyring
# -> SHA256 of the Packages index -> SHA256 of the .deb), and unpack its one binary into
# .tools/docker-compose (project-local: nothing on the system changes).
# Prints the binary's path on stdout; exits non-zero (with the reason on stderr) when it cannot.
# Skipped when `docker compose` already answers. APIARY_COMPOSE_V2=0 disables it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MIRROR="$("$(dirname "$0")/debian-mirror.sh")"   # $APIARY_DEBIAN_MIRROR, else the host's apt sources
SUITE="${APIARY_COMPOSE_SUITE:-trixie}"
DEST="${APIARY_COMPOSE_DEST:-$ROOT/.tools/docker-compose}"
log() { echo "[compose-v2] $*" >&2; }

if [[ -x "$DEST" ]] && "$DEST" version >/dev/null 2>&1; then echo "$DEST"; exit 0; fi
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
WORK="$(mktemp -d /tmp/apiary-compose.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

fetch() { curl -sSfL --connect-timeout 10 --max-time "$2" -o "$3" "$1"; }
KEYRING="${APIARY_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
command -v gpgv >/dev/null && [[ -f "$KEYRING" ]] || { log "gpgv or $KEYRING missing: cannot verify"; exit 1; }
fetch "$MIRROR/dists/$SUITE/InRelease" 60 "$WORK/InRelease" \
  || { log "cannot read $MIRROR/dists/$SUITE (offline mirror?)"; exit 1; }
gpgv --quiet --keyring "$KEYRING" --output "$WORK/Release" "$WORK/InRelease" 2>/dev/null \
  || { log "the $SUITE InRelease signature does not verify against $KEYRING"; exit 1; }
INDEX_SHA="$(awk -v f="main/binary-$ARCH/Packages.xz" '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3 == f {print $1}' "$WORK/Release")"
fetch "$MIRROR/dists/$SUITE/main/binary-$ARCH/Packages.xz" 120 "$WORK/Packages.xz" \
  || { log "cannot fetch the $SUITE Packages index"; exit 1; }
echo "$INDEX_SHA  $WORK/Packages.xz" | sha256sum -c --quiet - \
  || { log "the $SUITE Packages index does not match its signed Release file"; exit 1; }
# The package's stanza: Filename and SHA256.
read -r FILE SHA < <(xz -dc "$WORK/Packages.xz" | awk '
  /^Package: /{p = ($2 == "docker-compose")} p && /^Filename: /{f=$2} p && /^SHA256: /{s=$2}
  /^$/{ if (p && f && s) { print f, s; exit } p=0 }')
[[ -n "${FILE:-}" && -n "${SHA:-}" ]] || { log "no docker-compose package in $SUITE"; exit 1; }
log "fetching $MIRROR/$FILE"
fetch "$MIRROR/$FILE" 300 "$WORK/compose.deb" || { log "download of $FILE failed"; exit 1; }
echo "$SHA  $WORK/compose.deb" | sha256sum -c --quiet - \
  || { log "$FILE does not match the SHA256 of the Packages index"; exit 1; }
dpkg-deb -x "$WORK/compose.deb" "$WORK/x"
BIN="$WORK/x/usr/libexec/docker/cli-plugins/docker-compose"
[[ -x "$BIN" ]] || { log "$FILE has no cli-plugins/docker-compose"; exit 1; }
"$BIN" version >/dev/null || { log "the unpacked binary does not run here"; exit 1; }
mkdir -p "$(dirname "$DEST")"
mv "$BIN" "$DEST"
log "$("$DEST" version) at $DEST"
echo "$DEST"
