@integration @p0
Feature: Complete inference flow
  A completion travels client -> orchestrator -> hive -> worker and back; the text is exactly the
  mock model's deterministic output for (prompt, seed, max_tokens).

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @smoke
  Scenario: A non-streamed completion returns the worker's deterministic text
    When tenant "tenant-a" requests a completion of "the quick brown bee" with 12 tokens and seed 7
    Then the response status is 200
    And the completion text is the mock model's output
    And the response carries the job id in the X-Apiary-Job-Id header and the body
    And a "job.completed" event for the last job is published within 2 seconds
    And the job of the last completion is "completed" in /v1/jobs for tenant "tenant-a"

  @smoke
  Scenario: An SSE-streamed completion delivers its tokens incrementally and ends with [DONE]
    Given every worker generates 20 tokens per second
    When tenant "tenant-a" streams a completion of "a streamed prompt" with 24 tokens and seed 3
    Then the response status is 200
    And the stream ended with [DONE] and no error event
    And the completion text is the mock model's output
    And the stream delivered its tokens in 12 or more chunks of whole tokens in order, the first at least 0.5 seconds before the last
    And a "job.first_token" event for the last job is published within 2 seconds

  Scenario: A chat completion answers in the OpenAI chat shape
    When tenant "tenant-b" requests a chat completion of "hello hive" with 8 tokens and seed 1
    Then the response status is 200
    And the response body has object "chat.completion"
    And the completion text is the mock model's output

  Scenario: A streamed chat completion carries deltas and ends with [DONE]
    When tenant "tenant-b" streams a chat completion of "stream me a chat" with 10 tokens and seed 5
    Then the stream ended with [DONE] and no error event
    And the completion text is the mock model's output

  Scenario: The official openai client works against the API unchanged
    When the official openai client of tenant "tenant-a" streams a completion of "sdk prompt" with 6 tokens and seed 2
    Then the completion text is the mock model's output
