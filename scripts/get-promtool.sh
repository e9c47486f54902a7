#!/usr/bin/env bash
# Make promtool available for tests/ops (the alert rules' check and unit tests): the binary from Debian's
# `prometheus` package, fetched with `apt-get download` (apt verifies the signed index and the .deb's hash)
# and unpacked into .tools/promtool. Nothing is installed system-wide and no Prometheus server is started
# (installing the package would start one). Idempotent: exits at once when promtool already answers.
# Prints the binary's path on stdout; exits non-zero with the reason on stderr when it cannot.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${APIARY_PROMTOOL:-$ROOT/.tools/promtool}"
log() { echo "[promtool] $*" >&2; }

if [[ -x "$DEST" ]] && "$DEST" --version >/dev/null 2>&1; then echo "$DEST"; exit 0; fi
if command -v promtool >/dev/null && promtool --version >/dev/null 2>&1; then command -v promtool; exit 0; fi
command -v apt-get >/dev/null || { log "no apt-get on this machine: install promtool (Prometheus) by hand"; exit 1; }
WORK="$(mktemp -d /tmp/apiary-promtool.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
if ! timeout 300 apt-get download -qq prometheus >/dev/null 2>&1; then
  # a fresh machine may have no package lists yet: refresh them once (root only), then try again
  [[ $(id -u) -eq 0 ]] || { log "apt-get download prometheus failed and apt-get update needs root"; exit 1; }
  timeout 300 apt-get update -qq >/dev/null 2>&1 || { log "apt-get update failed (no mirror reachable?)"; exit 1; }
  timeout 300 apt-get download -qq prometheus >/dev/null 2>&1 || { log "apt-get download prometheus failed"; exit 1; }
fi
mkdir -p "$(dirname "$DEST")"
dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > "$WORK/promtool"
chmod 0755 "$WORK/promtool"
"$WORK/promtool" --version >/dev/null 2>&1 || { log "the unpacked promtool does not run"; exit 1; }
mv "$WORK/promtool" "$DEST"
log "installed $("$DEST" --version 2>&1 | head -1) at $DEST"
echo "$DEST"
