@integration @chaos
Feature: Memory faults and long runs
  A worker that runs out of memory is OOM-killed by its container limit (exit 137, OOMKilled) and its
  job is recovered; a long stream survives and the services' memory stays bounded.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @p1 @container
  Scenario: A worker OOM-killed while loading a model: its job is recovered
    Given every worker generates 30 tokens per second
    When tenant "tenant-a" starts a completion of "oom while loading" with 200 tokens and seed 6
    And the worker running that job runs out of memory while loading a newly provisioned model
    Then that worker's container exits with code 137 and OOMKilled within 15 seconds
    And a "worker.lost" event for that worker is published within 3 seconds
    And the running completions finish within 20 seconds, each with the mock model's output
    And the completion text is the mock model's output
    And the job ran to completion on another worker according to /v1/jobs

  @p1 @container
  Scenario: A worker OOM-killed during inference: its job is recovered
    Given every worker generates 30 tokens per second
    When tenant "tenant-a" starts a completion of "oom while generating" with 200 tokens and seed 7
    And the worker running that job runs out of memory during inference
    Then that worker's container exits with code 137 and OOMKilled within 15 seconds
    And a "worker.lost" event for that worker is published within 3 seconds
    And the running completions finish within 20 seconds, each with the mock model's output
    And the completion text is the mock model's output
    And the job ran to completion on another worker according to /v1/jobs

  @p2 @container @slow
  Scenario: A long stream survives while traffic flows, and service memory stays bounded
    Given the stack has served 200 warm-up completions
    And the memory of "orchestrator, hive-a, hive-b" is measured
    And every worker generates 40 tokens per second
    When tenant "tenant-b" starts a long stream of 400 tokens
    And 300 completions of 4 tokens are sent at once by tenants "tenant-a" over 8 connections
    Then the long stream finishes within 30 seconds with [DONE] and the exact text, its tokens in order spread over at least 8 seconds
    And every completion succeeded
    When the memory of "orchestrator, hive-a, hive-b" is measured again
    Then no measured service grew by more than 40 MiB
