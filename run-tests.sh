#!/usr/bin/env bash
# The test command: unit tests (pytest over tests/, exit 5 "no tests" counts as failure), then the
# container suite (./run-integration-tests.sh --tags @integration). Exits non-zero if either fails.
# Extra arguments go to run-integration-tests.sh (e.g. --timeout-multiplier 2).
set -uo pipefail
cd "$(dirname "$0")"

# promtool for tests/ops (alert rules): unpacked from Debian's prometheus package into .tools/, once.
./scripts/get-promtool.sh >/dev/null || echo "WARNING: promtool unavailable; tests/ops will fail and say why" >&2

# Set-up (venv from requirements/dev.lock, refreshed when requirements change) lives in one place:
./run-integration-tests.sh --setup >/dev/null || { echo "ERROR: harness set-up failed" >&2; exit 2; }

# Time budget for the whole command (CI allows 90 min): the unit tests get at most 30 min, and the
# suite's behave phase whatever is left minus 12 min for build, stack start and teardown (max 45).
# (--foreground keeps Ctrl-C reaching pytest.)
BUDGET_MIN="${APIARY_TEST_BUDGET_MIN:-80}"
start=$SECONDS

# Two pytest phases. Tests without a Docker engine (marked by tests/conftest.py from their fixtures) run
# over APIARY_TEST_WORKERS pytest-xdist workers (default 3; 1 = serial), one file per group so a module's
# local stack starts once. The Docker tests then run serially: they share the engine, its images and the
# machine's timing with each other (4 workers on this 2-core VM were slower and broke timing tests).
workers="${APIARY_TEST_WORKERS:-3}"   # 3 on 2 cores: many tests wait on sockets, not the CPU (docs/scale-out.md)
xdist=()
if [[ "$workers" != 1 ]]; then xdist=(-n "$workers" --dist loadgroup); fi
unit=0
run_phase() {   # run_phase NAME MARKEXPR [pytest args...]: one pytest phase under the 30-min unit budget
  local name="$1" expr="$2"; shift 2
  local left=$(( 30 * 60 - (SECONDS - start) )); (( left < 60 )) && left=60
  local t0=$SECONDS
  echo "== unit tests, $name (pytest tests/ -m '$expr' $*)"
  timeout --foreground -k 30 "$left" .venv/bin/python -m pytest tests/ -m "$expr" --durations=15 "$@"
  local rc=$?
  if [[ $rc -eq 5 ]]; then echo "ERROR: pytest collected no $name tests" >&2; rc=1; fi
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then echo "ERROR: the unit tests did not finish within 30 min" >&2; fi
  echo "== unit tests, $name: exit $rc in $(( SECONDS - t0 )) s"
  if [[ $rc -ne 0 ]]; then unit=1; fi
}
run_phase "without Docker" "not docker" "${xdist[@]}"
run_phase "with Docker" "docker"

left_min=$(( (BUDGET_MIN * 60 - (SECONDS - start)) / 60 - 12 ))
max_min=$(( left_min > 45 ? 45 : (left_min < 5 ? 5 : left_min) ))
echo "== integration suite (./run-integration-tests.sh --tags @integration --max-minutes $max_min $*)"
./run-integration-tests.sh --tags @integration --max-minutes "$max_min" "$@"
integ=$?

echo "== result: unit tests exit $unit, integration suite exit $integ"
if [[ $unit -ne 0 ]]; then exit 1; fi
exit $integ
