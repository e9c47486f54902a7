@integration @zeromq @p1
Feature: Unix pipe and ZeroMQ end to end
  The worker's engine subprocess writes tokens to a Unix pipe; the worker relays them as PARTIAL frames
  over ZeroMQ through the hive and orchestrator to the client's SSE stream, in order, none lost or repeated.

  @smoke
  Scenario: A long stream crosses pipe and sockets in order with the exact text
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 50 tokens per second
    When tenant "tenant-b" streams a completion of "pipe to socket" with 64 tokens and seed 11
    Then the stream ended with [DONE] and no error event
    And the completion text is the mock model's output
    And the stream delivered its tokens in 32 or more chunks of whole tokens in order, the first at least 0.6 seconds before the last
    And a "job.completed" event for the last job is published within 2 seconds
