@integration @p0
Feature: Failure recovery with a worker crash
  A worker that dies mid-job is marked lost within 1 s; its job is re-dispatched when no token reached
  the client, else the stream ends with an explicit worker_lost error (never a silent truncation).

  Background:
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 20 tokens per second

  Scenario: A crash before any token reached the client re-dispatches the job
    When tenant "tenant-a" starts a completion of "crash me quietly" with 40 tokens and seed 4
    And the worker running that job crashes at its next token
    Then the crashed worker is marked lost within 1 seconds of the crash
    And the running completions finish within 15 seconds, each with the mock model's output
    And the response status is 200
    And the completion text is the mock model's output
    And the job was re-dispatched to another worker

  Scenario: A crash after tokens were streamed ends the stream with worker_lost
    When tenant "tenant-b" starts streaming a completion of "crash me loudly" with 60 tokens and seed 9
    And the worker running that job crashes at its next token
    Then the crashed worker is marked lost within 1 seconds of the crash
    And the running completions finish within 10 seconds, each with the mock model's output or an explicit error
    And the stream ended with an explicit "worker_lost" error naming the job and no [DONE]
    And a "job.failed" event for the last job is published within 2 seconds
