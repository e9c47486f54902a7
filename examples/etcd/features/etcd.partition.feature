@example
Feature: etcd replaces a partitioned leader and stays linearizable
  The election timeout is 1 s (docker-compose.yml): a follower campaigns within [T, 2T) without a
  heartbeat, and the pytest (tests/examples/test_etcd_faults.py) measured up to 2.81 s on a loaded
  2-core host, so both bounds are 2T + 2 s of slack, counted from the cut.

  Scenario: a partition isolates the leader; linearizable reads during it stay linearizable
    Given the stack is healthy within 60 seconds
    And the etcd members agree on one leader within 20 seconds
    And the register keys are "lin0, lin1, lin2"
    When 6 clients start the register workload on "{members}" for 6 seconds with linearizable reads
    And the register workload has completed 30 ops within 5 seconds
    And the fault "partition" is applied to "{leader}|*"
    Then the fault proved it took effect
    When a new leader is elected among the others within 4 seconds
    Then the old leader steps down within 4 seconds
    When every register workload has finished within 15 seconds
    And every fault is healed
    Then every fault was healed
    And the history is linearizable
    And every service is healthy within 30 seconds
    And the etcd members agree on one leader within 20 seconds
