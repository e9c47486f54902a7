@example @soak
Feature: a seeded soak: the kit's generator against etcd
  The kit's generator draws a fault schedule from the run's seed and ../soak-profile.yml (partitions both
  ways and one way, pauses and kills of the members, up to two at once) and the kit's player plays it while
  clients read, write and compare-and-set registers on every member with linearizable reads. The seed is
  printed with the schedule: `--seed N` plays the same schedule again. The workload outlasts the last
  fault by the profile's quiet 8 s, so the history ends with the healed cluster serving.

  Scenario: a seeded schedule of partitions, pauses and kills plays; the history stays linearizable
    Given the stack is healthy within 60 seconds
    And the etcd members agree on one leader within 20 seconds
    And the register keys are "soak0, soak1, soak2"
    When 5 clients start the register workload on "{members}" for 37 seconds with linearizable reads at 100 ops a second
    And the register workload has completed 30 ops within 5 seconds
    And the generator's fault schedule from "soak-profile.yml" plays for 36 seconds with the run's seed
    And every register workload has finished within 20 seconds
    And every fault is healed
    Then the schedule played at least 4 faults, each proved in effect
    And every fault was healed
    And the history is linearizable
    And every service is healthy within 30 seconds
    And the etcd members agree on one leader within 20 seconds
