"""`python -m examples.client`: the command line of the API client (exit 0 all ok, 1 a request failed, 2 usage)."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time

from examples.client.api import Client, Outcome
from examples.client.progress import Progress
from examples.client.retry import Policy
from examples.client.stats import render, summarize


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The options (argparse exits 2 on a usage error)."""
    p = argparse.ArgumentParser(prog="python -m examples.client",
                                description="Send completions to Apiary's API and print throughput, latency and "
                                            "errors.")
    p.add_argument("--base-url", default=os.environ.get("APIARY_BASE_URL", "http://127.0.0.1:8080"),
                   help="the API, e.g. http://127.0.0.1:8080 (env APIARY_BASE_URL)")
    p.add_argument("--key", default=os.environ.get("APIARY_API_KEY"), help="bearer key (env APIARY_API_KEY)")
    p.add_argument("--rate", type=float, default=0.0, help="requests started per second (0: as fast as allowed)")
    p.add_argument("--count", type=int, default=100, help="requests to send")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (one connection each)")
    p.add_argument("--stream", action="store_true", help="stream the answers (SSE); time to first token reported")
    p.add_argument("--model", default="tinyllama")
    p.add_argument("--chat", action="store_true", help="/v1/chat/completions instead of /v1/completions")
    p.add_argument("--prompt", default="hello from the client example")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-retries", type=int, default=5, help="retries per request on 429, 503 and lost connections")
    p.add_argument("--backoff-base", type=float, default=0.1, help="503 backoff: base seconds, doubled per retry")
    p.add_argument("--backoff-cap", type=float, default=5.0, help="503 backoff: the largest step in seconds")
    p.add_argument("--max-wait", type=float, default=30.0, help="the longest single wait, whatever Retry-After says")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout of each try in seconds")
    p.add_argument("--seed", type=int, default=None, help="seed of the jitter (repeatable waits)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    if not a.key:
        p.error("--key (or APIARY_API_KEY) is required")
    if a.count < 1 or a.concurrency < 1 or a.rate < 0 or a.max_retries < 0:
        p.error("--count and --concurrency must be >= 1, --rate and --max-retries >= 0")
    return a


def run(client: Client, count: int, concurrency: int, rate: float, progress: Progress) -> list[Outcome]:
    """Requests 0..count-1 over `concurrency` threads; with a rate, request i starts no earlier than i/rate s."""
    results: list[Outcome | None] = [None] * count
    indexes, lock, t0 = itertools.count(), threading.Lock(), time.perf_counter()

    def work() -> None:
        while not client.stop.is_set():
            with lock:
                i = next(indexes)
            if i >= count:
                return
            if rate and client.stop.wait(max(0.0, t0 + i / rate - time.perf_counter())):
                return
            results[i] = client.request(i)
            progress.update(results[i].ok)

    threads = [threading.Thread(target=work, name=f"client-{n}", daemon=True) for n in range(min(concurrency, count))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        client.stop.set()
    return [r if r is not None else Outcome(i, error="not sent (interrupted)") for i, r in enumerate(results)]


def main(argv: list[str] | None = None) -> int:
    """Run the load and print the summary; exit 1 when any request failed."""
    a = parse(argv)
    policy = Policy(max_retries=a.max_retries, backoff_base_s=a.backoff_base, backoff_cap_s=a.backoff_cap,
                    max_wait_s=a.max_wait, timeout_s=a.timeout)
    try:
        client = Client(a.base_url, a.key, a.model, a.max_tokens, a.prompt, a.stream, a.chat, policy, a.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = Progress(a.count, enabled=not a.no_progress)
    started = time.perf_counter()
    try:
        outcomes = run(client, a.count, a.concurrency, a.rate, progress)
    except KeyboardInterrupt:
        client.stop.set()
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        progress.close()
    settings = {"base_url": a.base_url, "model": a.model, "stream": a.stream, "chat": a.chat, "count": a.count,
                "concurrency": a.concurrency, "rate": a.rate, "max_tokens": a.max_tokens, "max_retries": a.max_retries}
    summary = summarize(outcomes, time.perf_counter() - started, settings)
    print(json.dumps(summary, indent=2) if a.json else render(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
