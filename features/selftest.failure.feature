@selftest
Feature: Self-test of the failure path
  Deliberately fails on an observed fact so a run proves it produces a complete failure bundle and
  exit code 1. Never part of @integration; run with --tags @selftest.

  Scenario: The orchestrator's /health is expected to answer 599 (it answers 200: this fails)
    Then the orchestrator's /health answers 599

  @container
  Scenario: A traceback in a service log fails a scenario whose steps all pass
    When a Python traceback is written to the log of "hive-a"
    Then the orchestrator's /health answers 200
