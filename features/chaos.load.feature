@integration @chaos
Feature: Load, backpressure and streaming clients
  Sustained load loses nothing and its latency is recorded; an overloaded queue answers 429 with
  Retry-After without dropping an accepted job; queries stay fast while jobs stream; a client that
  hangs up cancels its job on the worker without disturbing the others.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @p2 @slow
  Scenario: High-throughput stress for a fixed time loses nothing and records its p99 latency
    When 12 clients send 4-token completions back to back for 15 seconds
    Then every completion succeeded
    And every completion's text is the mock model's output
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 10 seconds
    And the p99 latency of that load is under 2500 ms and is the figure recorded in the run's chaos-metrics.jsonl

  @p1
  Scenario: An overloaded admission queue answers 429 with Retry-After and loses no accepted job
    Given every worker generates 2 tokens per second
    When a burst of 64 more 8-token completions than the admission queue holds is sent at once
    And the orchestrator has throttled at least 32 requests within 30 seconds
    And the workers are fast again
    Then the burst is fully answered within 90 seconds
    And every burst request was answered 200 with the mock model's output or 429 with a Retry-After header
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 10 seconds
    And the "orchestrator" queue depth returns to 0 within 10 seconds
    When tenant "tenant-a" requests a completion of "after the storm" with 6 tokens and seed 8
    Then the completion text is the mock model's output

  @p2
  Scenario: /v1/jobs/{id} and /v1/workers stay fast while jobs stream
    Given every worker generates 20 tokens per second
    When tenant "tenant-a" starts 8 streamed completions of 60 tokens that are all dispatched within 5 seconds
    And /v1/jobs/{id} and /v1/workers are queried back to back for 2 seconds
    Then the p99 latency of both queries was under 200 ms
    And the queries saw the jobs "running"
    And the other streams finish within 15 seconds with [DONE] and the mock model's output

  @p1
  Scenario: A client that hangs up mid-stream cancels its job on the worker; other clients are unaffected
    Given every worker generates 20 tokens per second
    And every worker's job counters are scraped
    When tenant "tenant-b" starts 2 streamed completions of 40 tokens that are all dispatched within 5 seconds
    And tenant "tenant-a" streams a completion of 60 tokens and hangs up after 3 tokens
    Then the hung-up job is "cancelled" in /v1/jobs within 2 seconds
    And the worker that ran the hung-up job counted it as cancelled within 2 seconds
    And the other streams finish within 15 seconds with [DONE] and the mock model's output
