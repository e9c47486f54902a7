@integration @zeromq @p1
Feature: Control round trips over TCP across containers
  A peer on the stack's own network registers with READY and gets an acknowledgement (the REQ/REP-style
  control exchange of AMDP); a peer that speaks before registering is told to re-register.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: A probe hive registers with the orchestrator and is announced
    When a probe hive "probe-hive-1" registers with the orchestrator and then disconnects
    Then the probe got a READY acknowledgement from role "orchestrator"
    And a "hive.registered" event for hive "probe-hive-1" is published within 3 seconds
    And a "hive.left" event for hive "probe-hive-1" is published within 3 seconds

  Scenario: A probe worker registers with a hive and reaches the orchestrator through it
    When a probe worker "probe-worker-1" registers with hive "hive-a" for model "tinyllama" and then disconnects
    Then the probe got a READY acknowledgement from role "hive"
    And a "worker.registered" event for worker "probe-worker-1" is published within 3 seconds

  Scenario: A peer that speaks before READY is told to re-register
    When a probe peer sends a HEARTBEAT to "orchestrator" without registering
    Then the probe got a DISCONNECT with reason "not_registered"
