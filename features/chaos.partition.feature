@integration @chaos @partition @container
Feature: Partitions, pauses and lossy links
  A link cut with `docker network disconnect`, a hive frozen with SIGSTOP, one-way drops and random
  packet loss with iptables: the cut-off peer is marked lost within 1 s, its jobs are served elsewhere,
  it re-registers after the heal, and no result is lost or duplicated.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 20 tokens per second

  @p1
  Scenario: Partition orchestrator <-> hive: the hive is lost, the other hive serves, it comes back
    When tenant "tenant-a" starts 8 completions of 30 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on hive "hive-a"
    When "orchestrator" is partitioned from "hive-a"
    Then a "hive.lost" event for hive "hive-a" is published within 1 seconds
    And every running completion succeeded with the mock model's output within 15 seconds
    And the jobs that were running on hive "hive-a" completed elsewhere according to /v1/jobs
    When the network is healed
    Then a "hive.registered" event marked recovered for hive "hive-a" is published within 10 seconds
    And every worker of hive "hive-a" is ready in /v1/workers within 10 seconds
    And hive "hive-a" serves completions again within 10 seconds
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds

  @p1
  Scenario: Partition hive <-> worker: the worker is lost, its jobs move, it comes back
    When tenant "tenant-a" starts 8 completions of 30 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on worker "worker-b1"
    When "hive-b" is partitioned from "worker-b1"
    Then a "worker.lost" event for worker "worker-b1" is published within 1 seconds
    And every running completion succeeded with the mock model's output within 15 seconds
    And the jobs that were running on worker "worker-b1" completed elsewhere according to /v1/jobs
    When the network is healed
    Then a "worker.registered" event marked recovered for worker "worker-b1" is published within 10 seconds
    And /v1/workers shows worker "worker-b1" as "ready" within 5 seconds
    And worker "worker-b1" serves completions again within 10 seconds
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds

  @p1
  Scenario: A paused hive (SIGSTOP) is detected like a partition and recovers after unpause
    When tenant "tenant-a" starts 8 completions of 30 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on hive "hive-b"
    When "hive-b" is paused
    Then a "hive.lost" event for hive "hive-b" is published within 1 seconds
    And every running completion succeeded with the mock model's output within 15 seconds
    And the jobs that were running on hive "hive-b" completed elsewhere according to /v1/jobs
    When "hive-b" is resumed
    Then a "hive.registered" event marked recovered for hive "hive-b" is published within 10 seconds
    And every worker of hive "hive-b" is ready in /v1/workers within 10 seconds
    And hive "hive-b" serves completions again within 10 seconds
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds

  @p2
  Scenario: One-way partition: a hive whose packets to the orchestrator are dropped is lost, then recovers
    When tenant "tenant-a" starts 8 completions of 30 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on hive "hive-a"
    When every packet "hive-a" sends to "orchestrator" is dropped
    Then a "hive.lost" event for hive "hive-a" is published within 1 seconds
    And every running completion succeeded with the mock model's output within 15 seconds
    And the jobs that were running on hive "hive-a" completed elsewhere according to /v1/jobs
    When the one-way drops are healed
    Then a "hive.registered" event marked recovered for hive "hive-a" is published within 10 seconds
    And hive "hive-a" serves completions again within 10 seconds
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds

  @p2
  Scenario: 10% random packet loss on a worker link is tolerated: every job completes exactly once
    When "worker-a1" loses 10% of incoming packets
    And 40 completions of 8 tokens are sent at once by tenants "tenant-a, tenant-b" over 8 connections
    Then every completion succeeded
    And every completion's text is the mock model's output
    And no completion was lost or duplicated
    And every job completed exactly once with one job.completed event each within 5 seconds
    And the random-loss rule in "worker-a1" dropped at least 1 packets
    And "worker-a1" completed at least 2 of those jobs
