#!/usr/bin/env bash
# Re-lock the dependencies: compile the human-edited top-level pins (requirements/services.txt,
# requirements/dev.txt) into requirements/services.lock and requirements/dev.lock, every package pinned
# with its hashes (pip-tools `pip-compile --generate-hashes`, run from a throwaway venv under /tmp).
# Locked versions are kept unless a top-level pin needs another; pass --upgrade (or
# --upgrade-package NAME) to move them. dev.lock is constrained by services.lock, so the harness venv
# and the images share every service dependency's version. Usage: scripts/lock-requirements.sh [--upgrade]
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${APIARY_HOST_PYTHON:-python3}"
PIP_TOOLS="pip-tools==7.6.2"
TOOLS="$(mktemp -d /tmp/apiary-pip-tools.XXXXXX)"
trap 'rm -rf "$TOOLS"' EXIT

"$PY" -m venv "$TOOLS" || { echo "ERROR: $PY -m venv failed (apt-get install python3-venv)" >&2; exit 2; }
"$TOOLS/bin/pip" install -q "$PIP_TOOLS" >&2 || { echo "ERROR: could not install $PIP_TOOLS" >&2; exit 2; }
compile() {   # compile SOURCE LOCK [pip-compile args...]
  local src="$1" lock="$2"; shift 2
  echo "[lock] $src -> $lock" >&2
  CUSTOM_COMPILE_COMMAND="scripts/lock-requirements.sh" "$TOOLS/bin/pip-compile" -q --generate-hashes \
    --allow-unsafe --strip-extras --no-emit-find-links --no-emit-index-url "$@" -o "$lock" "$src"
}
compile requirements/services.txt requirements/services.lock "$@"
compile requirements/dev.txt requirements/dev.lock -c requirements/services.lock "$@"
echo "[lock] done: $(grep -c '==' requirements/services.lock) service and" \
  "$(grep -c '==' requirements/dev.lock) dev packages locked" >&2
