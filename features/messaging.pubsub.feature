@integration @zeromq @p1
Feature: Cluster events over PUB/SUB
  The orchestrator's PUB socket delivers every event to every subscriber, in seq order, honouring
  topic prefix filters. The window compared starts where the subscribers joined and ends at the last
  event any observer saw, so an event lost at either end is caught.

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
    Then subscriber "all" saw "job.completed" for each of the 20 requests within 3 seconds
    And subscriber "jobs" saw "job.completed" for each of the 20 requests within 3 seconds
    And a "worker.healthy" event for worker "worker-b1" is published within 3 seconds
    And subscriber "all" received every event in seq order with no gap
    And subscriber "jobs" received only events whose topic starts with "job."
    And subscriber "workers" received only events whose topic starts with "worker., hive."
    And subscriber "jobs" received exactly the "job." events published since the subscribers joined, as "all" saw them, within 2 seconds
    And subscriber "workers" received exactly the "worker." events published since the subscribers joined, as "all" saw them, within 2 seconds
