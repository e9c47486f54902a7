@integration @p0
Feature: Worker registration and discovery
  /v1/workers lists every hive and worker with its model, slots, state and heartbeat age.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @smoke
  Scenario: Every worker is listed with its hive and model
    Then /v1/workers lists these workers
      | worker    | hive   | model     |
      | worker-a1 | hive-a | tinyllama |
      | worker-a2 | hive-a | tinyllama |
      | worker-b1 | hive-b | tinyllama |
      | worker-b2 | hive-b | tinyllama |
    And every worker in /v1/workers has a heartbeat age under 1 seconds

  Scenario: A restarted worker re-registers and is announced
    When "worker-b2" is restarted
    Then a "worker.registered" event for worker "worker-b2" is published within 10 seconds
    And /v1/workers shows worker "worker-b2" as "ready" within 5 seconds
