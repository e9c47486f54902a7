"""The client example against a tiny scripted HTTP server on loopback: 429 + Retry-After then 200, 503 then 200,
SSE streams; the server's own arrival times prove the waits happened (not the client's account of them)."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from examples.client.retry import Policy, backoff_s, parse_retry_after, wait_for
from services.stack import ROOT

COMPLETION = {"id": "cmpl-1", "object": "text_completion", "choices": [{"text": "hi", "index": 0}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


class Script(ThreadingHTTPServer):
    """Answers POSTs from a list of (status, headers, body) in order; records each arrival."""

    daemon_threads = True

    def __init__(self, answers: list[tuple[int, dict, bytes]]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers, self.arrivals, self.lock = list(answers), [], threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.arrivals.append((time.monotonic(), self.path, dict(self.headers), json.loads(body)))
            status, headers, payload = self.server.answers.pop(0) if self.server.answers else (500, {}, b"{}")
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(payload)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def serve(answers):
    server = Script(answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def client(url: str, *args: str, timeout: float = 60) -> tuple[int, dict, str]:
    p = subprocess.run([sys.executable, "-m", "examples.client", "--base-url", url, "--key", "k", "--json", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}, p.stderr


def error(code: str, status: int) -> bytes:
    return json.dumps({"error": {"message": code, "type": "server_error", "code": code}}).encode()


def test_429_waits_retry_after_then_succeeds():
    server = serve([(429, {"Retry-After": "1"}, error("queue_full", 429)), (200, {}, json.dumps(COMPLETION).encode())])
    try:
        rc, out, err = client(server.url, "--count", "1", "--concurrency", "1")
    finally:
        server.shutdown()
    assert rc == 0, err
    assert out["ok"] == 1 and out["retries"] == {"429": 1} and out["waited_s"]["429"] == 1.0
    (t0, path, h0, b0), (t1, _, h1, b1) = server.arrivals
    assert path == "/v1/completions" and h0["Authorization"] == "Bearer k" and b0["model"] == "tinyllama"
    assert 1.0 <= t1 - t0 < 6.0, f"the retry came {t1 - t0:.3f} s after the 429, Retry-After said 1 s"
    assert h0["Idempotency-Key"] == h1["Idempotency-Key"] and b0 == b1, "a retry must be the same request"
    assert out["latency_ms"]["p50"] >= 1000 and out["tokens"] == 2


def test_503_backs_off_exponentially_with_jitter_then_succeeds():
    answers = [(503, {}, error("no_capacity", 503))] * 3 + [(200, {}, json.dumps(COMPLETION).encode())]
    server = serve(answers)
    try:
        rc, out, err = client(server.url, "--count", "1", "--backoff-base", "0.4", "--seed", "7")
    finally:
        server.shutdown()
    assert rc == 0, err
    assert out["ok"] == 1 and out["retries"] == {"503": 3}
    times = [a[0] for a in server.arrivals]
    gaps = [b - a for a, b in zip(times, times[1:])]
    for n, gap in enumerate(gaps):          # retry n waits in [d/2, d], d = 0.4 * 2**n
        assert gap >= 0.4 * 2 ** n / 2, f"retry {n} came after {gap:.3f} s, less than half of {0.4 * 2 ** n} s"
    assert gaps[2] > gaps[0], f"no exponential growth: {gaps}"
    assert 0 <= sum(gaps) - out["waited_s"]["503"] < 3.0, (gaps, out["waited_s"])


def test_gives_up_after_max_retries_and_counts_the_error():
    server = serve([(503, {}, error("no_capacity", 503))] * 3)
    try:
        rc, out, _ = client(server.url, "--count", "1", "--max-retries", "2", "--backoff-base", "0.05")
    finally:
        server.shutdown()
    assert rc == 1 and len(server.arrivals) == 3
    assert out["failed"] == 1 and out["errors"] == {"503 no_capacity": 1} and out["retries"] == {"503": 2}


def test_stream_reports_ttft_and_an_error_event_is_an_error():
    chunk = lambda t: b'data: {"choices":[{"text":"' + t + b'","index":0}]}\n\n'  # noqa: E731
    ok = chunk(b"a") + chunk(b"b") + b"data: [DONE]\n\n"
    bad = chunk(b"a") + b'event: error\ndata: {"error":{"code":"worker_lost","message":"x"}}\n\n'
    sse = {"Content-Type": "text/event-stream"}
    server = serve([(200, sse, ok), (200, sse, bad)])
    try:
        rc, out, _ = client(server.url, "--count", "2", "--concurrency", "1", "--stream")
    finally:
        server.shutdown()
    assert rc == 1 and out["ok"] == 1 and out["errors"] == {"stream worker_lost": 1}
    assert out["ttft_ms"]["p50"] is not None and out["retries"] == {}, "tokens were delivered: no retry"
    assert all(a[3]["stream"] is True for a in server.arrivals)


def test_text_output_and_progress():
    server = serve([(200, {}, json.dumps(COMPLETION).encode())] * 20)
    try:
        p = subprocess.run([sys.executable, "-m", "examples.client", "--base-url", server.url, "--key", "k",
                            "--count", "20", "--concurrency", "4", "--rate", "100"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert p.returncode == 0, p.stderr
    assert "requests    20 (ok 20, failed 0)" in p.stdout and "latency     p50" in p.stdout
    assert "errors      none" in p.stdout and "rate 100.0/s" in p.stdout
    assert "20/20 ok 20 failed 0" in p.stderr, p.stderr
    assert len(server.arrivals) == 20
    span = server.arrivals[-1][0] - server.arrivals[0][0]
    assert span >= 19 / 100 * 0.9, f"--rate 100 sent 20 requests in {span:.3f} s"


def test_usage_errors_exit_2():
    p = subprocess.run([sys.executable, "-m", "examples.client", "--count", "1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "--key" in p.stderr


def test_policy_pure_functions():
    rng, policy = random.Random(1), Policy(backoff_base_s=0.1, backoff_cap_s=1.0, max_retries=3, max_wait_s=10)
    for retry in range(8):
        d = min(1.0, 0.1 * 2 ** retry)
        assert d / 2 <= backoff_s(retry, policy, rng) <= d
    assert len({round(backoff_s(2, policy, rng), 6) for _ in range(20)}) > 1, "no jitter"
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert wait_for(429, "2", 0, policy, rng) == 2.0
    assert wait_for(429, "3600", 0, policy, rng) == 10, "capped by max_wait"
    assert 1.0 <= wait_for(503, "1", 0, policy, rng), "a 503's Retry-After is a floor"
    assert wait_for(400, None, 0, policy, rng) is None and wait_for(429, "1", 3, policy, rng) is None
