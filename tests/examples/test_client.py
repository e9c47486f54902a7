"""`python -m examples.client` against the local stack (orchestrator, 1 hive, 2 workers as processes): every
request completes, the figures are printed, and the 429s it rode out are the ones the orchestrator counted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.stack import ROOT, LocalStack, http_get

pytestmark = pytest.mark.slow

ADMISSION = 4       # APIARY_QUEUE_MAX: jobs queued or running at once before 429 + Retry-After: 1


@pytest.fixture(scope="module")
def stack():
    with LocalStack(hives=1, workers_per_hive=2, orchestrator_env={"APIARY_QUEUE_MAX": str(ADMISSION)},
                    worker_env={"APIARY_SLOTS": "2"}).start() as s:
        yield s


def jobs_by_outcome(stack: LocalStack) -> dict[str, float]:
    """apiary_jobs_total by outcome, from the orchestrator's own /metrics."""
    status, text = http_get(stack.api_url, "/metrics")
    assert status == 200
    return {s.labels["outcome"]: s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "apiary_jobs_total"}


def run_client(stack: LocalStack, *args: str) -> tuple[int, dict, str]:
    p = subprocess.run([sys.executable, "-m", "examples.client", "--base-url", stack.api_url, "--key", stack.key,
                        "--json", "--seed", "1", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return p.returncode, json.loads(p.stdout), p.stderr


def test_non_streamed_requests_all_complete_with_figures(stack):
    before = jobs_by_outcome(stack)
    rc, out, err = run_client(stack, "--count", "40", "--concurrency", str(ADMISSION), "--max-tokens", "4",
                              "--model", "tinyllama")
    after = jobs_by_outcome(stack)
    assert rc == 0, (out.get("errors"), err[-300:])
    assert out["requests"] == 40 and out["ok"] == 40 and out["failed"] == 0 and out["errors"] == {}
    assert after.get("completed", 0) - before.get("completed", 0) == 40, "the orchestrator completed another count"
    lat = out["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert out["throughput_rps"] > 0 and out["tokens"] == 40 * 4
    assert "40/40 ok 40 failed 0" in err, "no progress bar on stderr"


def test_streamed_overload_rides_out_429_with_retry_after(stack):
    """3x the admission limit at once: the orchestrator refuses some with 429, the client waits Retry-After
    (1 s) and retries them until every one completes; its 429 count equals the orchestrator's."""
    before = jobs_by_outcome(stack)
    rc, out, err = run_client(stack, "--count", "24", "--concurrency", str(3 * ADMISSION), "--stream",
                              "--max-tokens", "20", "--max-retries", "20")
    after = jobs_by_outcome(stack)
    assert rc == 0, (out.get("errors"), err[-300:])
    assert out["ok"] == 24 and out["errors"] == {}
    throttled = after.get("throttled", 0) - before.get("throttled", 0)
    assert out["retries"].get("429", 0) > 0, f"no 429 at 3x the admission limit: {out}"
    assert out["retries"]["429"] == throttled, (out["retries"], throttled)
    assert out["waited_s"]["429"] == pytest.approx(out["retries"]["429"] * 1.0), "Retry-After: 1 not honoured"
    assert after.get("completed", 0) - before.get("completed", 0) == 24
    ttft = out["ttft_ms"]
    assert 0 < ttft["p50"] <= ttft["p99"] and ttft["p50"] <= out["latency_ms"]["p50"]
    assert out["latency_ms"]["max"] >= 1000, "a retried request's latency must include its Retry-After wait"
