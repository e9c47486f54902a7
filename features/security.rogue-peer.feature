@integration @security @zeromq @p1
Feature: Rogue peer on the control network
  A peer inside the stack's networks sends malformed AMDP frames; each is answered with an ERROR naming
  its defect, counted in apiary_protocol_errors_total and dropped; the services stay healthy and serving.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: Malformed frames to the orchestrator are counted and dropped
    Given the "orchestrator" metrics are scraped
    When a rogue peer sends every kind of malformed frame to "orchestrator"
    Then the rogue peer got an ERROR naming each frame's defect
    And the "orchestrator" protocol error counter rose for every kind of malformed frame
    And "orchestrator" answers /health with 200
    When tenant "tenant-a" requests a completion of "still serving" with 6 tokens and seed 2
    Then the completion text is the mock model's output
    And /v1/workers shows worker "worker-a1" as "ready" within 2 seconds

  Scenario: Malformed frames to a hive are counted and dropped
    Given the "hive-a" metrics are scraped
    When a rogue peer sends every kind of malformed frame to "hive-a"
    Then the rogue peer got an ERROR naming each frame's defect
    And the "hive-a" protocol error counter rose for every kind of malformed frame
    And "hive-a" answers /health with 200
    And /v1/workers shows worker "worker-a1" as "ready" within 2 seconds
    And /v1/workers shows worker "worker-a2" as "ready" within 2 seconds
    When 16 completions of 4 tokens are sent at once by tenants "tenant-a, tenant-b" over 8 connections
    Then every completion succeeded
    And every completion's text is the mock model's output
