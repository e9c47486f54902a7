@integration @chaos
Feature: Cluster membership under churn and restarts
  Two hives serve together; workers, hives and the orchestrator can die, restart or join in numbers
  while jobs run, and every accepted job still ends exactly once: completed, or failed explicitly.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @p1
  Scenario: Both hives serve jobs
    When 40 completions of 4 tokens are sent at once by tenants "tenant-a, tenant-b" over 8 connections
    Then every completion succeeded
    And every completion's text is the mock model's output
    And /v1/jobs shows the completed jobs ran on workers of both hives "hive-a, hive-b"

  @p1 @container @slow
  Scenario: Worker churn under load loses and duplicates nothing
    Given every worker generates 100 tokens per second
    When a background load of 6 clients sending 8-token completions runs
    And workers "worker-a1, worker-b2, worker-a2, worker-b1" are killed and started again 4 times, 0.5 seconds apart
    And the background load stops within 30 seconds
    Then the background load completed at least 40 requests
    And every completion succeeded
    And every completion's text is the mock model's output
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds
    And every job of this scenario is terminal in /v1/jobs within 5 seconds
    And /v1/jobs agrees with every client outcome

  @p1 @container
  Scenario: A worker restarted during inference hands its job over and comes back
    Given every worker generates 20 tokens per second
    When tenant "tenant-a" starts a completion of "restart during inference" with 100 tokens and seed 5
    And the worker running that job is restarted
    Then the running completions finish within 15 seconds, each with the mock model's output
    And the completion text is the mock model's output
    And the job was handed to another worker after the restart according to /v1/jobs
    And the restarted worker is registered and ready again within 10 seconds

  @p1 @container
  Scenario: Orchestrator restart with active workers: the cluster re-forms, accepted jobs end explicitly
    Given every worker generates 20 tokens per second
    When tenant "tenant-a" starts 8 completions of 100 tokens that are all dispatched within 5 seconds
    And "orchestrator" is restarted
    Then the orchestrator answers /health within 20 seconds
    And the cluster re-forms with 2 hives and 4 ready workers within 10 seconds
    And the running completions finish within 15 seconds, each with the mock model's output or an explicit error
    And no completion was lost or duplicated
    And every job of this scenario ended "completed" or with an explicit error in /v1/jobs within 5 seconds
    And /v1/jobs agrees with every client outcome
    When tenant "tenant-b" requests a completion of "after the restart" with 6 tokens and seed 2
    Then the completion text is the mock model's output

  @p1 @container
  Scenario: A hive killed and restarted with active workers: its workers re-register and jobs are served
    Given every worker generates 20 tokens per second
    When tenant "tenant-a" starts 8 completions of 30 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on hive "hive-a"
    When "hive-a" is killed
    Then a "hive.lost" event for hive "hive-a" is published within 1 seconds
    When "hive-a" is started again
    Then a "hive.registered" event marked recovered for hive "hive-a" is published within 10 seconds
    And every worker of hive "hive-a" is ready in /v1/workers within 10 seconds
    And every running completion succeeded with the mock model's output within 15 seconds
    And the jobs that were running on hive "hive-a" completed elsewhere according to /v1/jobs
    And no completion was lost or duplicated
    And hive "hive-a" serves completions again within 10 seconds
    And every job completed exactly once with one job.completed event each within 5 seconds

  @p1 @container
  Scenario: Eight workers join a hive at once and each is registered exactly once
    When 8 extra workers join hive "hive-b" at the same time
    Then /v1/workers lists every extra worker exactly once as ready within 20 seconds
    And hive "hive-b" lists every extra worker exactly once
    And exactly one "worker.registered" event was published for each extra worker
    And the extra workers serve completions

  @p1
  Scenario: Three provision requests for one model share a single download
    When the admin sends 3 provision requests at once for one new model of 10000000 bytes to hive "hive-a"
    Then every provision request was accepted with 202
    And a "model.ready" event for that model is published within 20 seconds
    And the hive started exactly one download of that model
    And a completion of that model returns the mock model's output
