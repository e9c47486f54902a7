@integration @p1
Feature: Model provisioning
  Provisioning downloads a model into the hives' caches with progress events, verifies its checksum
  (retrying a corrupt download), loads it on workers and serves it.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  Scenario: Provision a model, see its progress, then serve it
    When the admin provisions model "llama-mini" of 2000000 bytes
    Then the response status is 202
    And a "model.progress" event for model "llama-mini" is published within 10 seconds
    And a "model.ready" event for model "llama-mini" is published within 20 seconds
    And /v1/models lists model "llama-mini" within 10 seconds
    When tenant "tenant-a" requests a completion of model "llama-mini" with 5 tokens
    Then the completion text is the mock model's output

  Scenario: A corrupt download is detected and retried
    Given every hive corrupts the next 1 downloads of model "llama-corrupt"
    When the admin provisions model "llama-corrupt" of 1000000 bytes
    Then the response status is 202
    And a "model.retry" event for model "llama-corrupt" is published within 10 seconds
    And a "model.ready" event for model "llama-corrupt" is published within 20 seconds
    And some hive's metric "apiary_hive_downloads_total" with outcome="corrupt" is at least 1
