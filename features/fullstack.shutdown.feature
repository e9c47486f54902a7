@integration @p0 @fresh_stack @slow
Feature: Cascading shutdown
  POST /v1/admin/shutdown stops admitting, sends SHUTDOWN down to hives and workers; in-flight jobs
  finish within the grace period; every process exits 0; workers first, then hives, then the orchestrator.

  Scenario: Admin shutdown drains accepted jobs and every service exits 0
    Given the cluster is ready with 4 workers within 20 seconds
    And 6 streamed completions of 100 tokens are running for tenant "tenant-a"
    When the admin requests a cluster shutdown
    Then the shutdown request is accepted
    And a "cluster.shutdown" event is published within 2 seconds
    And the running completions finish within 10 seconds, each with the mock model's output
    And every completion succeeded
    And every completion's text is the mock model's output
    And every service exits with code 0 within 20 seconds
    And every worker left before its hive, and every hive left before the orchestrator exited
