@integration @chaos @container
Feature: Registry storage faults
  The orchestrator's SQLite registry lives on a volume: a corrupt file is moved aside and rebuilt from
  re-registration; a read-only volume gives a clear error while the API keeps serving.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @p1
  Scenario: A corrupt registry database is moved aside and the cluster re-forms
    When tenant "tenant-a" sends 4 completions of 3 tokens
    And the orchestrator is stopped, its registry database overwritten with garbage, and started again
    Then the orchestrator answers /health within 20 seconds
    And the orchestrator's log shows "registry database is corrupt; moved aside and rebuilt"
    And the corrupt registry file was moved aside next to a new "registry.db"
    And the cluster re-forms with 2 hives and 4 ready workers within 10 seconds
    When tenant "tenant-b" requests a completion of "after corruption" with 6 tokens and seed 3
    Then the completion text is the mock model's output
    And the job of the last completion is "completed" in /v1/jobs for tenant "tenant-b"

  @p1
  Scenario: A read-only registry volume gives a clear error while the API keeps serving
    When the orchestrator's registry volume is made read-only and the orchestrator restarted
    Then the orchestrator answers /health within 20 seconds
    And the cluster re-forms with 2 hives and 4 ready workers within 10 seconds
    And the orchestrator's /health reports a registry error mentioning "/data/registry.db" within 5 seconds
    And the orchestrator's log shows "registry.error"
    When tenant "tenant-a" requests a completion of "read-only registry" with 6 tokens and seed 4
    Then the completion text is the mock model's output
    And the job of the last completion is "completed" in /v1/jobs for tenant "tenant-a"

  @p2
  Scenario: The registry recovers without a restart once its volume is writable again
    When the orchestrator's registry volume is made read-only and the orchestrator restarted
    Then the cluster re-forms with 2 hives and 4 ready workers within 20 seconds
    And the orchestrator's /health reports a registry error mentioning "/data/registry.db" within 5 seconds
    When the orchestrator's registry volume is made writable again
    And tenant "tenant-a" requests a completion of "writable again" with 4 tokens and seed 5
    Then the orchestrator's /health reports the registry ok within 10 seconds
