#!/usr/bin/env bash
# The test command: unit tests (pytest over tests/, exit 5 "no tests" counts as failure), then the
# container suite (./run-integration-tests.sh --tags @integration). Exits non-zero if either fails.
# Extra arguments go to run-integration-tests.sh (e.g. --timeout-multiplier 2).
set -uo pipefail
cd "$(dirname "$0")"

# promtool for tests/ops (alert rules): unpacked from Debian's prometheus package into .tools/, once.
./scripts/get-promtool.sh >/dev/null || echo "WARNING: promtool unavailable; tests/ops will fail and say why" >&2

# Set-up (venv from requirements/dev.txt, refreshed when requirements change) lives in one place:
./run-integration-tests.sh --setup >/dev/null || { echo "ERROR: harness set-up failed" >&2; exit 2; }

# Time budget for the whole command (CI allows 90 min): the unit tests get at most 30 min, and the
# suite's behave phase whatever is left minus 12 min for build, stack start and teardown (max 45).
# (--foreground keeps Ctrl-C reaching pytest.)
BUDGET_MIN="${APIARY_TEST_BUDGET_MIN:-80}"
start=$SECONDS

# APIARY_TEST_WORKERS=N spreads the unit tests over N pytest-xdist workers. The default is 1 (serial): on
# the 2-core VM, 4 workers were not faster and timing-sensitive tests failed (docs/scale-out.md).
workers="${APIARY_TEST_WORKERS:-1}"
xdist=()
if [[ "$workers" != 1 ]]; then xdist=(-n "$workers"); fi
echo "== unit tests (pytest tests/ ${xdist[*]})"
timeout --foreground -k 30 30m .venv/bin/python -m pytest tests/ --durations=25 "${xdist[@]}"
unit=$?
if [[ $unit -eq 5 ]]; then echo "ERROR: pytest collected no tests" >&2; unit=1; fi
if [[ $unit -eq 124 || $unit -eq 137 ]]; then echo "ERROR: the unit tests did not finish within 30 min" >&2; fi

left_min=$(( (BUDGET_MIN * 60 - (SECONDS - start)) / 60 - 12 ))
max_min=$(( left_min > 45 ? 45 : (left_min < 5 ? 5 : left_min) ))
echo "== integration suite (./run-integration-tests.sh --tags @integration --max-minutes $max_min $*)"
./run-integration-tests.sh --tags @integration --max-minutes "$max_min" "$@"
integ=$?

echo "== result: unit tests exit $unit, integration suite exit $integ"
if [[ $unit -ne 0 ]]; then exit 1; fi
exit $integ
