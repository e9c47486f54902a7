@integration @security @curve @container @p0
Feature: CURVE on the control plane
  Every ZeroMQ link is CURVE-encrypted and each server admits only the public keys of its run. An intruder
  that registers as a hive with an idle ready worker, with no key or with a key nobody listed, from inside
  the control network or from the host through the published ROUTER port, while tenants send completions,
  hears nothing, is never listed, and every refusal is counted in apiary_curve_refusals_total by reason.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: Intruders without a listed key get no job, wherever they connect from
    When a background load of 4 clients sending 4-token completions runs
    And an intruder hive with no key registers an idle worker from the control network
    And an intruder hive with an unlisted key registers an idle worker from the control network
    And an intruder hive with no key registers an idle worker from the host
    And an intruder hive with an unlisted key registers an idle worker from the host
    And the background load stops within 10 seconds
    Then no intruder completed a handshake, heard a frame or was listed in /v1/workers
    And the orchestrator counted every intruder's refusal by its reason
    And the background load completed at least 20 requests
