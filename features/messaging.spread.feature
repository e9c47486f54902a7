@integration @zeromq @p1
Feature: Jobs spread over workers
  Jobs are dealt to the least-loaded workers: each runs exactly once, none is lost, and the load is fair.

  Scenario: 80 jobs over four workers, no loss, no duplicate, fair
    Given the cluster is ready with 4 workers within 20 seconds
    When 80 completions of 4 tokens are sent at once by tenants "tenant-a" over 16 connections
    Then every completion succeeded
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds
    And the jobs were spread over all workers with no worker getting more than 3 times the jobs of another
