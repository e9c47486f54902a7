@integration @netquality @container
Feature: Slow links: latency on a link of the stack, without netem
  Toxiproxy's toxics (harness/toxiproxy) on the orchestrator <-> hive link: the link is steered through
  the harness's proxy (a DNAT rule in the hive's namespace, its ZeroMQ connection moved by `ss -K`) before
  the scenario measures, the latency goes onto the live connection, and the fault proves itself with a
  timed ZMTP greeting across the link.
  Heartbeats expire after 0.8 s (0.2 s x 4): a slower link is tolerated, a link slower than that is a loss.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 50 tokens per second
    When the link "orchestrator|hive-a" runs through the proxy
    Then every worker of hive "hive-a" is ready in /v1/workers within 5 seconds

  @p1
  Scenario: Latency below the heartbeat expiry on orchestrator <-> hive is tolerated, jobs are slower by the round trip
    When the link "orchestrator|hive-a" gets 200 ms of latency each way
    Then the latency is in effect on the link within 10 seconds
    And completions on hive "hive-a" are slower than on hive "hive-b" by about 400 ms
    And no hive or worker was declared lost since the latency began
    When the link is healed
    Then completions on hive "hive-a" take about as long as on hive "hive-b"
    And no hive or worker was declared lost since the latency began

  @p1
  Scenario: Latency above the heartbeat expiry: the hive is lost within 1 s of the expiry and recovers after the heal
    When the link "orchestrator|hive-a" gets 1000 ms of latency each way
    Then a "hive.lost" event for hive "hive-a" is published within 1 seconds of the heartbeat expiry
    And the latency is in effect on the link within 10 seconds
    When the link is healed
    Then a "hive.registered" event marked recovered for hive "hive-a" is published within 10 seconds
    And every worker of hive "hive-a" is ready in /v1/workers within 10 seconds
    And hive "hive-a" serves completions again within 10 seconds

  @p1
  Scenario: reset_peer mid-stream on orchestrator <-> hive: each stream ends exact or with an explicit error, never truncated or duplicated
    When tenant "tenant-a" starts 8 streamed completions of 60 tokens that are all dispatched within 5 seconds
    Then some of those jobs were running on hive "hive-a"
    When the link "orchestrator|hive-a" is reset 300 ms after data flows
    Then the reset is in effect on the link within 5 seconds
    And the running completions finish within 20 seconds, each with the mock model's output or an explicit error
    And no completion was lost or duplicated
    And the resets reached the hive's connection: it reconnected through the proxy at least once
    When the link is healed
    Then hive "hive-a" serves completions again within 10 seconds
