"""The whole stack as local processes (no Docker): 500 jobs through HTTP while a worker is killed -9 and a
hive is paused; every job completes exactly once with the exact text or fails explicitly, losses are seen
within 1 s.  Plus a smoke test of the `python -m services.stack` launcher."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.common import Conn, Result, job_body, split_url
from services.protocol import generate_text
from services.stack import ROOT, LocalStack, http_get

pytestmark = pytest.mark.slow

JOBS = 500
CONCURRENCY = 48
REQUEST_TIMEOUT_S = 12.0        # X-Request-Timeout: the server's deadline for each job
HANG_MARGIN_S = 5.0             # a response later than deadline + margin counts as a hang
DETECTION_LIMIT_S = 1.0
TENANTS = ("key-a", "key-b", "key-c")


def spec(i: int) -> dict:
    """Job i: half streamed, a quarter chat, three tenants, 4..23 tokens at 200 tokens/s (20..115 ms)."""
    return {"prompt": f"bees {i} visit flower {i * 7 % 13}", "max_tokens": 4 + i % 20, "seed": i,
            "stream": i % 2 == 0, "chat": i % 4 == 1, "key": TENANTS[i % len(TENANTS)]}


async def run_jobs(stack: LocalStack, faults) -> list[Result]:
    host, port = split_url(stack.api_url)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(JOBS):
        queue.put_nowait(i)
    results: list[Result | None] = [None] * JOBS
    done = 0

    async def client() -> None:
        nonlocal done
        conn = Conn(host, port)
        while not queue.empty():
            i = queue.get_nowait()
            s = spec(i)
            path = "/v1/chat/completions" if s["chat"] else "/v1/completions"
            result = Result(index=i, t_sched=time.perf_counter())
            await conn.post(path, job_body(s["prompt"], s["max_tokens"], s["seed"], s["stream"], s["chat"]), s["key"],
                            s["stream"], result, {"X-Request-Timeout": str(REQUEST_TIMEOUT_S)},
                            timeout=REQUEST_TIMEOUT_S + HANG_MARGIN_S)
            results[i] = result
            done += 1
        conn.close()

    fault_task = asyncio.ensure_future(faults(lambda: done))
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    await fault_task
    return [r for r in results if r is not None]


def classify(result: Result) -> str:
    """'completed', 'failed' (explicit error) or a description of what is wrong."""
    s = spec(result.index)
    if result.exception:
        return f"transport problem: {result.exception}"
    if result.status == 200 and not result.sse_error:
        expected = generate_text(s["prompt"], s["seed"], s["max_tokens"])
        if s["stream"] and not result.done:
            return "stream ended without [DONE] or an error event (silent truncation)"
        if result.text != expected:
            return f"wrong text {result.text!r} != {expected!r}"
        return "completed"
    if result.status == 200 and result.sse_error:
        return "failed" if result.error_code else "SSE error event without a code"
    if result.status >= 400 and result.error_code:
        return "failed"
    return f"unexplained response: status {result.status}, code {result.error_code}"


@pytest.fixture
def stack():
    worker_env = {"APIARY_TOKENS_PER_S": "200", "APIARY_SLOTS": "4"}
    with LocalStack(hives=2, workers_per_hive=2, worker_env=worker_env) as running:
        yield running


@pytest.mark.timeout(240)
def test_500_jobs_survive_a_killed_worker_and_a_paused_hive(stack):
    tap = stack.events()  # started: the SUB handshake is done, so no event of the run is missed
    marks: dict[str, float] = {}

    async def faults(progress) -> None:
        while progress() < 100:
            await asyncio.sleep(0.01)
        marks["kill"] = stack.kill("worker-a1", signal.SIGKILL)
        while progress() < 200:
            await asyncio.sleep(0.01)
        marks["stop"] = stack.pause("hive-b")
        await asyncio.sleep(2.5)
        marks["cont"] = stack.resume("hive-b")

    try:
        results = asyncio.run(run_jobs(stack, faults))
        time.sleep(0.5)  # let trailing events arrive
    finally:
        tap.stop()
    assert set(marks) == {"kill", "stop", "cont"}, f"faults were not all injected: {marks}"

    # every job: completed with the exact text, or an explicit error; nothing hung or truncated
    assert len(results) == JOBS
    verdicts = {r.index: classify(r) for r in results}
    bad = {i: v for i, v in verdicts.items() if v not in ("completed", "failed")}
    assert not bad, f"{len(bad)} jobs neither completed nor failed explicitly, e.g. {list(bad.items())[:5]}"
    latest = max(r.latency for r in results)
    assert latest <= REQUEST_TIMEOUT_S + HANG_MARGIN_S
    counts = collections.Counter(verdicts.values())
    codes = collections.Counter(r.error_code for r in results if verdicts[r.index] == "failed")
    print(f"\n{counts['completed']} completed, {counts['failed']} failed {dict(codes)}; slowest {latest:.2f}s")
    assert counts["completed"] >= JOBS * 0.8, f"too few completions: {counts}, errors {dict(codes)}"

    # exactly once: distinct job ids, and the orchestrator published one terminal event per job
    ids = [r.job_id for r in results]
    assert None not in ids, [r for r in results if r.job_id is None][:3]
    assert len(set(ids)) == JOBS
    events = tap.events
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap in the event sequence (lost events)"
    terminal = collections.defaultdict(list)
    for e in events:
        if e["topic"] in ("job.completed", "job.failed", "job.cancelled"):
            terminal[e["job_id"]].append(e["topic"])
    for r in results:
        want = "job.completed" if verdicts[r.index] == "completed" else "job.failed"
        assert terminal[r.job_id] == [want], f"job {r.job_id} ({verdicts[r.index]}, {r.error_code}): {terminal[r.job_id]}"

    # detection: kill/stop instant -> worker.lost / hive.lost on the PUB socket
    lost_worker = tap.find("worker.lost", after=marks["kill"], worker_id="worker-a1")
    lost_hive = tap.find("hive.lost", after=marks["stop"], hive_id="hive-b")
    assert lost_worker is not None, "no worker.lost event for worker-a1"
    assert lost_hive is not None, "no hive.lost event for hive-b"
    worker_s, hive_s = lost_worker["_received"] - marks["kill"], lost_hive["_received"] - marks["stop"]
    print(f"detection: worker.lost {worker_s * 1000:.0f} ms, hive.lost {hive_s * 1000:.0f} ms")
    assert worker_s <= DETECTION_LIMIT_S
    assert hive_s <= DETECTION_LIMIT_S

    # the paused hive comes back with its workers
    stack.wait_ready(15, ["worker-a2", "worker-b1", "worker-b2"])


@pytest.mark.timeout(90)
def test_launcher_prints_url_and_key_serves_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "services.stack", "--json", "--workdir", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    info = None
    lines = []
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and info is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("{"):
                info = json.loads(line)
        assert info is not None, f"no JSON line; stdout {lines}, stderr {proc.stderr.read() if proc.poll() is not None else ''}"
        assert any(line.startswith("API ") and info["api_url"] in line for line in lines)
        assert any(line.startswith("key ") and info["key"] in line for line in lines)
        services = info["services"]
        assert sorted(services) == ["hive-a", "hive-b", "orchestrator", "worker-a1", "worker-a2", "worker-b1",
                                    "worker-b2"]
        ports = [p for s in services.values() for k, p in s.items() if k not in ("pid", "kind")]
        assert len(ports) == len(set(ports)) == 7 + 2 + 2
        status, body = http_get(info["api_url"], "/v1/workers", info["key"])
        assert status == 200 and {w["id"] for w in body["workers"] if w["state"] == "ready"} == {
            "worker-a1", "worker-a2", "worker-b1", "worker-b2"}

        async def one() -> Result:
            conn = Conn(*split_url(info["api_url"]))
            try:
                return await conn.post("/v1/completions", job_body("hello", 5, 7), info["key"], False, Result(),
                                       timeout=10)
            finally:
                conn.close()

        result = asyncio.run(one())
        assert result.status == 200 and result.text == generate_text("hello", 7, 5)
        pids = [s["pid"] for s in services.values()]
        children = [c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)]
        assert len(children) >= 4, "each worker should run an engine subprocess"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out = proc.stdout.read()
        assert "stopped (SIGTERM)" in out
        alive = [p for p in pids + children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        assert not alive, f"left running: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
