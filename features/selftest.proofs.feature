@selftest @proofs
Feature: Self-test of the proofs behind the integration Thens
  Each scenario breaks, on purpose, what one integration Then observes, and its last step must fail for
  that reason: a buffered stream, an event lost at the end of a window, a tenant answered 200 for another
  tenant's job, a presented key in a log, a completion that failed, a loss rule that never dropped.
  Never part of @integration; every scenario here fails, so a run of them exits 1.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: A stream buffered whole by a proxy fails the streaming check
    Given every worker generates 20 tokens per second
    And the API is reached through a proxy that buffers each response whole
    When tenant "tenant-a" streams a completion of "a buffered prompt" with 24 tokens and seed 3
    Then the stream ended with [DONE] and no error event
    And the completion text is the mock model's output
    And the stream delivered its tokens in 12 or more chunks of whole tokens in order, the first at least 0.5 seconds before the last

  Scenario: A subscriber that misses the last event of the window fails the window check
    Given these event subscribers listen to the orchestrator
      | name    | topics        |
      | all     |               |
      | workers | worker.,hive. |
    When worker "worker-b1" reports itself unhealthy
    Then a "worker.unhealthy" event for worker "worker-b1" is published within 3 seconds
    When subscriber "workers" stops listening
    And worker "worker-b1" reports itself healthy
    Then a "worker.healthy" event for worker "worker-b1" is published within 3 seconds
    And subscriber "workers" received exactly the "worker." events published since the subscribers joined, as "all" saw them, within 1 seconds

  Scenario: A tenant answered 200 for another tenant's job fails the cross-tenant check
    When 6 completions of 4 tokens are sent at once by tenants "tenant-a, tenant-b" over 4 connections
    And tenant "tenant-b" presents the key of tenant "tenant-a" from now on
    And every tenant of "tenant-a, tenant-b" fetches every job of this scenario
    Then each of "tenant-a, tenant-b" read its own jobs, was answered 404 for every job of the others, and got its own prompt's text

  @container
  Scenario: A presented wrong key in a service log fails the key-leak check
    When clients present 2 distinctive wrong keys to the API and each is answered 401
    And the first presented wrong key is written to the log of "orchestrator"
    Then no service log contains any API key or any presented wrong key

  Scenario: A completion that ends with an error fails "each with the mock model's output"
    Given every worker fails jobs with error "selftest failure"
    When tenant "tenant-a" starts a completion of "doomed" with 4 tokens and seed 1
    Then the running completions finish within 10 seconds, each with the mock model's output

  @container
  Scenario: Traffic with no loss rule fails the dropped-packet proof
    When 8 completions of 4 tokens are sent at once by tenants "tenant-a" over 4 connections
    Then every completion succeeded
    And the random-loss rule in "worker-a1" dropped at least 1 packets

  @curve @container
  Scenario: A hive holding the run's own key is admitted, and the intruder check says so
    When an intruder hive with the run's key registers an idle worker from the control network
    Then no intruder completed a handshake, heard a frame or was listed in /v1/workers
