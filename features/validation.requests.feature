@integration @security @p1
Feature: Request validation
  Bad requests are answered with the documented 4xx and an OpenAI-style error body naming the problem.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds

  @smoke
  Scenario: Malformed JSON is answered 400
    When tenant "tenant-a" posts the body '{"model": "tinyllama", "prompt": ' to "/v1/completions"
    Then the response status is 400
    And the error is an "invalid_request_error" with a message mentioning "json"

  Scenario: A body that is not an object is answered 400
    When tenant "tenant-a" posts the body '["tinyllama", "x"]' to "/v1/completions"
    Then the response status is 400
    And the error is an "invalid_request_error" with a message mentioning "object"

  Scenario: An oversized body is answered 413
    When tenant "tenant-a" posts a valid completion padded to 1100000 bytes to "/v1/completions"
    Then the response status is 413

  Scenario: An unknown model is answered 404 naming the model
    When tenant "tenant-a" requests a completion of model "no-such-model" with 4 tokens
    Then the response status is 404
    And the error message mentions "no-such-model"

  Scenario Outline: A bad field is answered 400 naming the field
    When tenant "tenant-a" posts the body '<body>' to "<path>"
    Then the response status is 400
    And the error is an "invalid_request_error" naming param "<param>"

    Examples:
      | path                 | body                                                       | param      |
      | /v1/completions      | {"model":"tinyllama","prompt":"x","max_tokens":"many"}     | max_tokens |
      | /v1/completions      | {"model":"tinyllama","prompt":42}                          | prompt     |
      | /v1/completions      | {"model":"tinyllama"}                                      | prompt     |
      | /v1/completions      | {"prompt":"x"}                                             | model      |
      | /v1/completions      | {"model":"tinyllama","prompt":"x","max_tokens":0}          | max_tokens |
      | /v1/completions      | {"model":"tinyllama","prompt":"x","max_tokens":100000000}  | max_tokens |
      | /v1/completions      | {"model":"tinyllama","prompt":"x","seed":"seven"}          | seed       |
      | /v1/completions      | {"model":"tinyllama","prompt":"x","stream":"yes"}          | stream     |
      | /v1/chat/completions | {"model":"tinyllama"}                                      | messages   |
      | /v1/chat/completions | {"model":"tinyllama","messages":"hi"}                      | messages   |
