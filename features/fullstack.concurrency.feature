@integration @p1
Feature: Concurrent requests
  200 requests at once from three tenants all complete, spread over all workers, exactly once, with
  no cross-tenant leakage.

  Scenario: 200 concurrent completions from three tenants
    Given the cluster is ready with 4 workers within 20 seconds
    When 200 completions of 8 tokens are sent at once by tenants "tenant-a, tenant-b, admin" over 64 connections, every 4th streamed
    Then every completion succeeded
    And every completion's text is the mock model's output
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds
    And the jobs were spread over all workers
    When every tenant of "tenant-a, tenant-b, admin" fetches every job of this scenario
    Then each of "tenant-a, tenant-b, admin" read its own jobs, was answered 404 for every job of the others, and got its own prompt's text
    And no job was visible to another tenant
