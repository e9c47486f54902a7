"""A real API client for Apiary's OpenAI-compatible HTTP API (`python -m examples.client --help`).

It sends `--count` completions at `--rate` requests/s over `--concurrency` keep-alive connections, honours
`Retry-After` on 429, backs off exponentially with jitter on 503 and on dropped connections (every retry carries
the same `Idempotency-Key`), shows a progress bar on stderr and prints throughput, latency p50/p95/p99 and the
error counts at the end (`--json` for machine output). Standard library only, apart from the project's one
percentile (`harness.stats`).
"""
