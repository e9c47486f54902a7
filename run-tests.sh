#!/usr/bin/env bash
# The test command: unit tests (pytest over tests/, exit 5 "no tests" counts as failure), then the
# container suite (./run-integration-tests.sh --tags @integration). Exits non-zero if either fails.
# Extra arguments go to run-integration-tests.sh (e.g. --timeout-multiplier 2).
set -uo pipefail
cd "$(dirname "$0")"

# Set-up (venv from requirements/dev.txt, refreshed when requirements change) lives in one place:
./run-integration-tests.sh --help >/dev/null || { echo "ERROR: harness set-up failed" >&2; exit 2; }

echo "== unit tests (pytest tests/)"
.venv/bin/python -m pytest tests/
unit=$?
if [[ $unit -eq 5 ]]; then echo "ERROR: pytest collected no tests" >&2; unit=1; fi

echo "== integration suite (./run-integration-tests.sh --tags @integration $*)"
./run-integration-tests.sh --tags @integration "$@"
integ=$?

echo "== result: unit tests exit $unit, integration suite exit $integ"
if [[ $unit -ne 0 ]]; then exit 1; fi
exit $integ
