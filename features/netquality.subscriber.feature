@integration @netquality @container
Feature: A slow event subscriber misses events, counts them, and stalls nobody
  The orchestrator's event PUB is lossy per subscriber (ZeroMQ's PUB: a subscriber whose queue holds
  APIARY_EVENT_HWM events, and APIARY_EVENT_SNDBUF bytes in the kernel, misses the next ones; compose sets 2000
  and 64 KiB). Every event carries the publisher's seq, so a
  subscriber that fell behind counts what it missed as gaps in seq: the slow-subscriber detection of the
  zguide's "suicidal snail", judged by the subscriber, not by the system under test. The slow subscriber
  connects through a proxy of the harness's Toxiproxy-compatible server capping its downstream.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 50 tokens per second

  @p1
  Scenario: A slow event subscriber misses events counted as seq gaps; the direct subscriber loses none and completions keep their latency
    When 8 completions of 4 tokens run 3 times, to measure their latency
    And an event subscriber connects through a proxy capping its downstream at 1 KB/s
    And completions run until the harness's direct subscriber has seen 9000 events since the cap, within 90 seconds
    And 8 completions of 4 tokens run 3 times with the slow subscriber connected
    Then the slow subscriber is behind the harness's direct subscriber, receiving at most about 1 KB/s
    And the completions kept their latency with the slow subscriber connected
    When the cap on the slow subscriber is lifted
    Then the slow subscriber catches up within 30 seconds, its seq gaps counting the events it missed
    And every event the slow subscriber missed reached the harness's direct subscriber, which has no gap
