@integration @netquality @container
Feature: A blackholed link: Toxiproxy's timeout toxic on a hive <-> worker link
  The link is steered through the harness's proxy (harness/nemesis/steering.py) before the jobs start;
  then the timeout toxic drops everything both ways while the TCP connection stays up, as a dead switch
  port does. Heartbeats expire after 0.8 s (0.2 s x 4): the worker must be detected as lost as a
  partitioned one is, its jobs served elsewhere, and it must come back after the heal.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 20 tokens per second
    When the link "hive-b|worker-b1" runs through the proxy
    Then /v1/workers shows worker "worker-b1" as "ready" within 5 seconds

  @p1
  Scenario: A blackholed worker link is detected like a partition: the worker is lost, its jobs move, it comes back
    When tenant "tenant-a" starts 8 completions of 30 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on worker "worker-b1"
    When the link "hive-b|worker-b1" is blackholed
    Then a "worker.lost" event for worker "worker-b1" is published within 1 seconds of the heartbeat expiry
    And the blackhole is in effect on the link within 5 seconds
    And every running completion succeeded with the mock model's output within 15 seconds
    And the jobs that were running on worker "worker-b1" completed elsewhere according to /v1/jobs
    When the link is healed
    Then a "worker.registered" event marked recovered for worker "worker-b1" is published within 10 seconds
    And /v1/workers shows worker "worker-b1" as "ready" within 5 seconds
    And no completion was lost or duplicated
