@integration @p1
Feature: Health propagation
  A worker's health travels worker -> hive -> orchestrator: /v1/workers shows it, the scheduler avoids
  it, and /ready answers 503 with a reason when no worker can serve.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: An unhealthy worker is shown, avoided, and recovers
    When worker "worker-a2" reports itself unhealthy
    Then a "worker.unhealthy" event for worker "worker-a2" is published within 2 seconds
    And /v1/workers shows worker "worker-a2" as "unhealthy" within 2 seconds
    And /ready answers 200 within 2 seconds
    And 8 completions from tenant "tenant-a" succeed and none ran on worker "worker-a2"
    When worker "worker-a2" reports itself healthy
    Then a "worker.healthy" event for worker "worker-a2" is published within 2 seconds
    And /v1/workers shows worker "worker-a2" as "ready" within 2 seconds

  Scenario: With every worker unhealthy the orchestrator is not ready
    When every worker reports itself unhealthy
    Then /ready answers 503 with a reason within 3 seconds
    When every worker reports itself healthy
    Then /ready answers 200 within 3 seconds
