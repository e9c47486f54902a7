@netquality @container
Feature: Slow links on the stack's host-loopback paths: a bandwidth-capped client
  A proxy of the harness's Toxiproxy-compatible server (harness/toxiproxy) listens on host loopback in front
  of a port the orchestrator publishes there: the client -> HTTP API path and the event PUB link (CURVE
  passes through it untouched). No steering: the harness is the client and connects to the proxy.

  Background:
    Given the cluster is ready with 4 workers within 20 seconds
    And every worker generates 50 tokens per second

  @p1
  Scenario: A bandwidth cap on a streaming client: tokens arrive more slowly, the stream is intact, nothing times out
    When a 40-token stream runs directly and, at the same time, through a proxy capping the client's downstream at 2 KB/s, with a 10 s deadline
    Then the capped stream's tokens arrived over at least 3 times as long as the direct stream's, at about 2 KB/s
    And both streams ended with [DONE] and the exact text, one token per chunk in order
    And both streams ended before their deadline and neither job timed out
