@integration @p1
Feature: Error propagation
  A worker's failure reaches the client as a specific status with the worker's message.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: A worker error fails the request with the worker's message
    Given every worker fails jobs with error "engine exploded"
    When tenant "tenant-a" requests a completion of "boom" with 4 tokens and seed 1
    Then the response status is 502
    And the error code is "worker_error"
    And the error message mentions "engine exploded"

  Scenario: Workers that reject jobs make the request fail as unavailable
    Given every worker rejects jobs with "maintenance window"
    When tenant "tenant-a" requests a completion of "rejected" with 4 tokens and seed 1
    Then the response status is 503
    And the error message mentions "maintenance window"
