@integration @chaos @container @soak @p1
Feature: Seeded chaos soak
  A generated fault schedule (partitions both ways and one way, packet loss, pauses and kill -9 of workers
  and hives, overlapping) plays while tenants send streamed and non-streamed completions that carry
  client-made nonces and retry with an Idempotency-Key. The verdict comes from evidence the orchestrator
  does not keep: what the clients received, the workers' own execution ledgers, and looking every job id
  up afterwards. Both seeds, their schedules and every figure land under <run>/soaks/.

  Scenario: A short soak with the release seed and with this run's fresh seed is judged valid and recovers
    When a 50-second soak runs under the "ci" profile with the release seed 20261201 and the run's fresh seed
    Then every fault of every soak proved it took effect
    And the independent checker judges every soak valid
    And every soak recovered within the gate's recovery limit
    And every soak kept the gate's availability during faults
    And every soak carried at least 10 requests a second and 10 faults a minute
