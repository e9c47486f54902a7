@example @selftest
Feature: the checker catches stale reads on a cut-off etcd leader
  A selftest that must pass: serializable reads answer from the member's own state, so the cut-off old
  leader keeps serving the value it held at the cut while the majority writes new ones. The checker has
  to call that history not linearizable and name the stale read: it can fail on real software.

  Scenario: serializable reads on the cut-off leader are named stale
    Given the stack is healthy within 60 seconds
    And the etcd members agree on one leader within 20 seconds
    And the register keys are "ser0, ser1"
    When the value "before-cut" is written to every register key on "{leader}"
    And the fault "partition" is applied to "{leader}|*" with {"direction": "both"}
    Then the fault proved it took effect
    When a new leader is elected among the others within 4 seconds
    And the value "after-cut" is written to every register key on "{new_leader}"
    And 4 clients start the register workload on "{others}" for 2.5 seconds with linearizable reads
    And 2 clients run the register workload on "{leader}" for 2.5 seconds with only serializable reads
    And every fault is healed
    Then every fault was healed
    And the history is not linearizable, with a stale read named
    And every service is healthy within 30 seconds
