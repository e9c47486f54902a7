@integration @zeromq @p1
Feature: Cluster events over PUB/SUB
  The orchestrator's PUB socket delivers every event to every subscriber, in seq order, honouring
  topic prefix filters.

  Scenario: Three subscribers receive all events, in order, with topic filters
    Given the cluster is ready with 4 workers within 20 seconds
    And these event subscribers listen to the orchestrator
      | name    | topics        |
      | all     |               |
      | jobs    | job.          |
      | workers | worker.,hive. |
    When 20 completions of 4 tokens are sent at once by tenants "tenant-a, tenant-b" over 8 connections
    And worker "worker-b1" reports itself unhealthy
    And worker "worker-b1" reports itself healthy
    Then subscriber "all" saw "job.completed" for every completed request within 3 seconds
    And subscriber "jobs" saw "job.completed" for every completed request within 3 seconds
    And a "worker.healthy" event for worker "worker-b1" is published within 3 seconds
    And subscriber "all" received every event in seq order with no gap
    And subscriber "jobs" received only events whose topic starts with "job."
    And subscriber "workers" received only events whose topic starts with "worker., hive."
    And subscriber "jobs" received exactly the "job." events that subscriber "all" received in its time window
    And subscriber "workers" received exactly the "worker." events that subscriber "all" received in its time window
