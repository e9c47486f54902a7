#!/usr/bin/env bash
# Front door of the integration suite: make/refresh the harness venv (.venv, from requirements/dev.txt,
# re-installed when that file's hash changes), then hand over to the Python runner.
# Usage: ./run-integration-tests.sh --help
set -euo pipefail
cd "$(dirname "$0")"

VENV=".venv"
REQ="requirements/dev.txt"
HASH="$(cat requirements/*.txt | sha256sum | cut -c1-16)"
STAMP="$VENV/.apiary-requirements"

if [[ ! -x "$VENV/bin/python" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$HASH" ]]; then
  echo "[setup] creating/refreshing $VENV from $REQ" >&2
  if [[ ! -x "$VENV/bin/python" ]]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then   # Debian splits ensurepip into python3-venv
      rm -rf "$VENV"
      if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "[setup] installing python3-venv (apt-get)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >&2 || true
      fi
      python3 -m venv "$VENV" || { echo "ERROR: could not create $VENV (apt-get install python3-venv)" >&2; exit 2; }
    fi
  fi
  "$VENV/bin/python" -m pip install -q -r "$REQ" >&2 || { echo "ERROR: could not install $REQ into $VENV" >&2; exit 2; }
  echo "$HASH" > "$STAMP"
fi

# Compose v2 (preferred) when the machine has only v1: a project-local binary from Debian's mirror,
# fetched once (scripts/get-compose-v2.sh). Without it the harness uses docker-compose v1.
if [[ -z "${APIARY_COMPOSE:-}" && "${APIARY_COMPOSE_V2:-1}" != 0 && ! -x .tools/docker-compose ]] \
   && command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then
  scripts/get-compose-v2.sh >/dev/null || echo "[setup] Compose v2 not available (see above): using docker-compose v1" >&2
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m harness.runner "$@"
