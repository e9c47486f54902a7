#!/usr/bin/env bash
# Front door of the integration suite: make/refresh the harness venv (.venv, from requirements/dev.lock,
# re-installed when the requirements' hash changes), then hand over to the Python runner.
# --help and --list install nothing: they run with the venv's python when it exists, else the system
# python3 (the runner's command line is stdlib only; --list then scans the features without behave).
# --setup only makes/refreshes the venv (run-tests.sh uses it). Usage: ./run-integration-tests.sh --help
set -euo pipefail
export APIARY_CWD="$PWD"    # FEATURE paths and --junit-xml are relative to where the user stands
cd "$(dirname "$0")"

VENV="${APIARY_VENV:-.venv}"   # override only to test the no-venv path
info=0 setup_only=0
for arg in "$@"; do
  case "$arg" in
    --) break ;;
    -h|--help|--list) info=1 ;;
    --setup) setup_only=1 ;;
  esac
done
if [[ $info -eq 1 && $setup_only -eq 0 ]]; then
  py="$VENV/bin/python"
  [[ -x "$py" ]] || py="$(command -v python3 || true)"
  [[ -n "$py" ]] || { echo "ERROR: no python3 on PATH (needed even for --help)" >&2; exit 2; }
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  exec "$py" -m harness.runner "$@"
fi

# The venv installs the lock (every package pinned, with hashes: scripts/lock-requirements.sh makes it
# from the top-level pins in requirements/*.txt); the stamp covers the pins and the locks alike.
REQ="requirements/dev.lock"
HASH="$(cat requirements/*.txt requirements/*.lock | sha256sum | cut -c1-16)"
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
  "$VENV/bin/python" -m pip install -q --require-hashes -r "$REQ" >&2 || { echo "ERROR: could not install $REQ into $VENV" >&2; exit 2; }
  echo "$HASH" > "$STAMP"
fi
[[ $setup_only -eq 0 ]] || { echo "[setup] $VENV is ready" >&2; exit 0; }

# Compose v2 (preferred) when the machine has only v1: a project-local binary from Debian's mirror,
# fetched once (scripts/get-compose-v2.sh). Without it the harness uses docker-compose v1.
dry=0
for arg in "$@"; do case "$arg" in --) break ;; --dry-run) dry=1 ;; esac; done
if [[ $dry -eq 0 && -z "${APIARY_COMPOSE:-}" && "${APIARY_COMPOSE_V2:-1}" != 0 && ! -x .tools/docker-compose ]] \
   && command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then
  scripts/get-compose-v2.sh >/dev/null || echo "[setup] Compose v2 not available (see above): using docker-compose v1" >&2
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m harness.runner "$@"
