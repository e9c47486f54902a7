@integration @p0 @security
Feature: Authentication end to end
  Every /v1 route needs a Bearer key mapped to a tenant; a tenant sees only its own jobs; keys never
  reach a log.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @smoke
  Scenario: A missing or wrong key is answered 401 with WWW-Authenticate
    When an anonymous client requests a completion of "who am i"
    Then the response status is 401
    And the response has a WWW-Authenticate header
    When a client with a wrong key requests a completion of "let me in"
    Then the response status is 401
    And the response has a WWW-Authenticate header

  Scenario: A tenant cannot read another tenant's job, but can read its own
    When tenant "tenant-a" requests a completion of "private prompt" with 4 tokens and seed 1
    Then the response status is 200
    When tenant "tenant-b" fetches the job of the last completion
    Then the response status is 404
    When tenant "tenant-a" fetches the job of the last completion
    Then the response status is 200
    And the fetched job is "completed"
    And no job was visible to another tenant

  Scenario: No API key, configured or presented, appears in any service log
    When tenant "tenant-a" requests a completion of "log probe a" with 2 tokens and seed 1
    And tenant "tenant-b" requests a completion of "log probe b" with 2 tokens and seed 1
    And tenant "admin" requests a completion of "log probe admin" with 2 tokens and seed 1
    And a client with a wrong key requests a completion of "log probe intruder"
    And clients present 3 distinctive wrong keys to the API and each is answered 401
    Then no service log contains any API key or any presented wrong key
