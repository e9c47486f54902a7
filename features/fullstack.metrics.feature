@integration @p2
Feature: Metrics
  Counters and histograms move with traffic and every scrape parses as Prometheus text.

  Scenario: Job counters and the latency histogram move with traffic
    Given the cluster is ready with 4 workers within 20 seconds
    And the "orchestrator" metrics are scraped
    When tenant "tenant-a" sends 10 completions of 3 tokens
    Then the "orchestrator" metric "apiary_jobs_total" with outcome="completed" rose by at least 10
    And the "orchestrator" histogram "apiary_job_latency_seconds" counted at least 10 more observations
    And the "orchestrator" metric "apiary_workers" with state="ready" is 4
    And every service's /metrics parses as Prometheus text with apiary samples
