@integration @smoke @p0
Feature: Stack health
  The environment itself: every service of the stack is up and healthy, the orchestrator answers
  /health and /ready, and it sees both hives with their four workers.

  Scenario: Every service is running and healthy, and the orchestrator sees 4 workers in 2 hives
    Then every service of the stack is running and healthy within 10 seconds
    And the orchestrator answers 200 on /health
    And the orchestrator answers 200 on /ready
    And /v1/workers lists 4 ready workers across 2 hives
