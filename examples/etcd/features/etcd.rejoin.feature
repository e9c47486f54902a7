@example
Feature: a killed etcd member rejoins and catches up
  Scenario: a killed follower restarts and serves the writes it missed
    Given the stack is healthy within 60 seconds
    And the etcd members agree on one leader within 20 seconds
    And the register keys are "kill0"
    When the value "before-kill" is written to every register key on "{leader}"
    Then "{follower}" serves the latest value of "kill0" within 5 seconds
    When the fault "kill" is applied to "{follower}"
    Then the fault proved it took effect
    When 20 values are written to "kill0" on the majority
    And every fault is healed
    Then every fault was healed
    And "{follower}" serves the latest value of "kill0" within 20 seconds
    And every service is healthy within 30 seconds
    And the etcd members agree on one leader within 20 seconds
