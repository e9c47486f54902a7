#!/usr/bin/env bash
# Download the services' Python dependencies as cp311 manylinux wheels into .wheelhouse/ on the host
# (containers cannot reach package indexes), from requirements/services.lock (every package pinned, with
# hashes that pip checks: scripts/lock-requirements.sh makes it); skipped while the lock is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${APIARY_HOST_PYTHON:-python3}"
REQ="requirements/services.lock"
DEST=".wheelhouse"
HASH="$(sha256sum "$REQ" | cut -c1-16)"

if [[ -f "$DEST/.stamp" && "$(cat "$DEST/.stamp")" == "$HASH" ]]; then
  echo "[wheelhouse] up to date ($HASH)" >&2
  exit 0
fi
echo "[wheelhouse] downloading wheels for $REQ" >&2
rm -rf "$DEST.tmp"
"$PY" -m pip download -q -d "$DEST.tmp" --only-binary=:all: --require-hashes \
  --implementation cp --python-version 3.11 --abi cp311 \
  --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -r "$REQ" >&2
cp "$REQ" "$DEST.tmp/requirements.txt"
echo "$HASH" > "$DEST.tmp/.stamp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "[wheelhouse] $(ls "$DEST"/*.whl | wc -l) wheels in $DEST" >&2
