"""Load generator of the end-to-end benchmark: closed- and open-loop HTTP jobs against a LocalStack, answers checked."""
from __future__ import annotations

import asyncio
import time

from bench.common import Conn, Result, job_body, ms, percentile, split_url
from services.protocol import generate_text
from services.stack import LocalStack

PROMPTS = [f"bench prompt {i}" for i in range(64)]
EXPECTED = {p: generate_text(p, 0, 1) for p in PROMPTS}


def check(result: Result, prompt: str, stream: bool, max_tokens: int = 1) -> bool:
    if not result.ok:
        return False
    if stream and not result.done:
        return False
    expected = EXPECTED[prompt] if max_tokens == 1 else generate_text(prompt, 0, max_tokens)
    return result.text == expected


class Load:
    """HTTP load against one stack."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.host, self.port = split_url(stack.api_url)
        self.keys = [k for t, k in stack.keys.items() if t != "admin"]
        self.bodies = {(p, s): job_body(p, 1, 0, s) for p in PROMPTS for s in (False, True)}

    async def closed_loop(self, conns: int, duration_s: float | None = None, jobs: int | None = None,
                          stream: bool = False) -> dict:
        """`conns` connections each sending the next job as soon as the previous answered."""
        issued = 0
        results: list[tuple[Result, str]] = []
        t0 = time.perf_counter()
        stop_at = t0 + duration_s if duration_s else None

        async def one(c: int) -> None:
            nonlocal issued
            conn = Conn(self.host, self.port)
            key = self.keys[c % len(self.keys)]
            while True:
                if jobs is not None and issued >= jobs:
                    break
                if stop_at is not None and time.perf_counter() >= stop_at:
                    break
                i = issued
                issued += 1
                prompt = PROMPTS[i % len(PROMPTS)]
                r = Result(index=i, t_sched=time.perf_counter())
                await conn.post("/v1/completions", self.bodies[(prompt, stream)], key, stream, r, timeout=30)
                results.append((r, prompt))
            conn.close()

        await asyncio.gather(*(one(c) for c in range(conns)))
        elapsed = time.perf_counter() - t0
        return self.summary(results, elapsed, stream, conns=conns)

    async def open_loop(self, rate: float, duration_s: float, stream: bool = False, pool: int = 32) -> dict:
        """Request i is due at t0 + i/rate on an idle keep-alive connection (a new one if none is idle)."""
        idle: list[Conn] = []
        for _ in range(pool):
            conn = Conn(self.host, self.port)
            await conn.open()
            idle.append(conn)
        total = int(rate * duration_s)
        results: list[tuple[Result, str]] = []
        tasks = []
        extra_conns = 0

        async def one(i: int, due: float) -> None:
            nonlocal extra_conns
            conn = idle.pop() if idle else None
            if conn is None:
                extra_conns += 1
                conn = Conn(self.host, self.port)
            prompt = PROMPTS[i % len(PROMPTS)]
            r = Result(index=i, t_sched=due)
            await conn.post("/v1/completions", self.bodies[(prompt, stream)], self.keys[i % len(self.keys)], stream,
                            r, timeout=30)
            results.append((r, prompt))
            idle.append(conn)

        loop = asyncio.get_running_loop()
        t0 = time.perf_counter() + 0.05
        late = 0
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                late += 1
            tasks.append(loop.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        for conn in idle:
            conn.close()
        out = self.summary(results, elapsed, stream, rate=rate)
        out.update(extra_connections=extra_conns, sends_late_over_1ms=late)
        return out

    @staticmethod
    def summary(results: list[tuple[Result, str]], elapsed: float, stream: bool, **extra) -> dict:
        good = [r for r, p in results if check(r, p, stream)]
        bad = [r for r, p in results if not check(r, p, stream)]
        lat = [r.latency for r in good]
        ttft = [r.ttft for r in good if r.ttft is not None]
        errors: dict[str, int] = {}
        for r in bad:
            key = r.exception or r.error_code or f"status {r.status}" + (" wrong text" if r.status == 200 else "")
            errors[key] = errors.get(key, 0) + 1
        out = {"stream": stream, "jobs": len(results), "ok": len(good), "lost": len(bad), "errors": errors,
               "elapsed_s": round(elapsed, 3), "jobs_per_s": round(len(good) / elapsed, 1) if elapsed else None,
               "latency_ms": {"p50": ms(percentile(lat, 50)), "p90": ms(percentile(lat, 90)),
                              "p99": ms(percentile(lat, 99)), "max": ms(max(lat) if lat else None)}}
        if stream:
            out["ttft_ms"] = {"p50": ms(percentile(ttft, 50)), "p90": ms(percentile(ttft, 90)),
                              "p99": ms(percentile(ttft, 99)), "max": ms(max(ttft) if ttft else None)}
        out.update(extra)
        return out


def run(coro):
    try:
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
