@selftest @soak @container
Feature: Self-test of the chaos checker and the shrinker
  A deliberate bug (a worker that re-runs its last job and sends its FINAL again after it re-registers
  with its hive) must be caught by the ledger-based checker, and the failing schedule must shrink to a few
  faults. Never part of @integration; the last step fails on purpose so the run exits 1.
  Deterministic on every git revision: the "selftest" profile pins the revision out of the seed and
  requires a 3 s hive-a|worker-a1 partition and a 3 s pause of worker-b2 while the load flows, each of
  which makes a bugged worker re-register (apiary_suite/profiles/selftest.yml, docs/chaos.md).

  Scenario: A worker that re-sends a FINAL after a partition is caught, and its schedule shrinks
    When a 30-second soak runs under the "selftest" profile with seed 7 and the deliberate bug "dup-final"
    Then the independent checker judges the last soak invalid with a "duplicate-execution" anomaly
    And the last soak applied at least 4 faults
    And shrinking the last soak within 16 replays and 600 seconds leaves at most 3 faults that still fail the same check
    And the independent checker judges every soak valid
