"""Measurements of the end-to-end benchmark: CPU and RSS per service, peak sweep, wrk cross-check, worker kills."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import Conn, Result, job_body, percentile, split_url
from bench.e2e_load import PROMPTS, Load, check, run
from services.stack import LocalStack


def rss_of(stack: LocalStack) -> dict:
    """RSS bytes per service (a worker includes its engine subprocess, reported separately too)."""
    out = {}
    for name, proc in stack.procs.items():
        try:
            p = psutil.Process(proc.pid)
            own = p.memory_info().rss
            kids = sum(c.memory_info().rss for c in p.children(recursive=True))
            out[name] = {"rss": own, "children_rss": kids}
        except psutil.Error:
            out[name] = None
    return out


def cpu_of(stack: LocalStack) -> dict:
    """CPU seconds (user + system) per service process and its children (a worker's engine), and this process."""
    out = {}
    for name, proc in stack.procs.items():
        try:
            p = psutil.Process(proc.pid)
            t = p.cpu_times()
            kids = 0.0
            for c in p.children(recursive=True):
                ct = c.cpu_times()
                kids += ct.user + ct.system
            out[name] = (t.user + t.system, kids)
        except psutil.Error:
            out[name] = (0.0, 0.0)
    t = psutil.Process().cpu_times()
    out["load-generator"] = (t.user + t.system, 0.0)
    return out


def cpu_per_job(load: Load, stack: LocalStack, jobs: int, conns: int, stream: bool) -> dict:
    """CPU microseconds each process spends per 1-token job (immune to other load on the machine)."""
    before = cpu_of(stack)
    r = run(load.closed_loop(conns, jobs=jobs, stream=stream))
    after = cpu_of(stack)
    per = {}
    for name in after:
        own = (after[name][0] - before.get(name, (0, 0))[0]) / jobs * 1e6
        kids = (after[name][1] - before.get(name, (0, 0))[1]) / jobs * 1e6
        per[name] = {"cpu_us": round(own, 1), "children_cpu_us": round(kids, 1)}
    by_kind: dict[str, float] = {}
    for name, v in per.items():
        kind = name if name in ("orchestrator", "load-generator") else name.split("-")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + v["cpu_us"]
        if v["children_cpu_us"]:
            by_kind["engine"] = by_kind.get("engine", 0.0) + v["children_cpu_us"]
    total = sum(by_kind.values())
    ncpu = len(psutil.Process().cpu_affinity() or []) or psutil.cpu_count()
    return {"stream": stream, "jobs": jobs, "connections": conns, "lost": r["lost"], "per_process": per,
            "per_kind_us": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "total_cpu_us_per_job": round(total, 1),
            "cpu_bound_ceiling_jobs_per_s": round(ncpu / total * 1e6, 1) if total else None,
            "stack_only_ceiling_jobs_per_s": round(ncpu / (total - by_kind.get("load-generator", 0)) * 1e6, 1)
            if total else None}


def peak(load: Load, stream: bool, sweep: list[int], duration_s: float, log) -> dict:
    runs = []
    for conns in sweep:
        r = run(load.closed_loop(conns, duration_s=duration_s, stream=stream))
        runs.append(r)
        log(f"  closed loop stream={stream} conns={conns}: {r['jobs_per_s']} jobs/s, lost {r['lost']} "
            f"p50 {r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms {r['errors'] or ''}")
    clean = [r for r in runs if r["lost"] == 0]
    best = max(clean, key=lambda r: r["jobs_per_s"]) if clean else None
    return {"runs": runs, "peak_jobs_per_s": best["jobs_per_s"] if best else 0,
            "at_connections": best["conns"] if best else None}


def wrk_peak(stack: LocalStack, conns: int, duration_s: int, threads: int = 1) -> dict | None:
    """Cross-check with wrk (C load generator) if installed: non-2xx and socket errors count as lost."""
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    body = json.dumps({"model": "tinyllama", "prompt": PROMPTS[0], "max_tokens": 1, "seed": 0})
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                 f'wrk.headers["Content-Type"] = "application/json"\n'
                 f'wrk.headers["Authorization"] = "Bearer {stack.key}"\n')
    script.close()
    out = subprocess.run([wrk, f"-t{threads}", f"-c{conns}", f"-d{duration_s}s", "--latency", "-s", script.name,
                          f"{stack.api_url}/v1/completions"], capture_output=True, text=True, timeout=duration_s + 30)
    Path(script.name).unlink()
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", text, re.M))
    return {"connections": conns, "threads": threads, "duration_s": duration_s,
            "jobs_per_s": float(rps.group(1)) if rps else None,
            "lost": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0),
            "latency": lat, "raw": text}


def kills(stack: LocalStack, count: int, log) -> dict:
    """kill -9 a worker with jobs in flight; kill->worker.lost and worker.lost->next job.dispatched of its jobs."""
    detection, redispatch, redispatched_evt, misses = [], [], [], []
    tap = stack.events(("worker.", "job."))
    host, port = split_url(stack.api_url)
    try:
        for k in range(count):
            target = stack.worker_ids[k % len(stack.worker_ids)]
            # long non-streamed jobs (1 s at 200 tokens/s) on every worker, so the target has one in flight
            mark = time.monotonic()

            async def submit_and_kill():
                async def job(i):
                    conn = Conn(host, port)
                    r = Result(index=i, t_sched=time.perf_counter())
                    prompt = f"kill {k} job {i}"
                    await conn.post("/v1/completions", job_body(prompt, 200, 0, False), stack.key, False, r,
                                    timeout=30)
                    conn.close()
                    return r, prompt
                tasks = [asyncio.ensure_future(job(i)) for i in range(2 * len(stack.worker_ids))]
                found = None
                deadline = time.monotonic() + 5
                while found is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    found = tap.find("job.dispatched", after=mark, worker_id=target)
                await asyncio.sleep(0.05)
                affected = {e["job_id"] for e in tap.matching("job.dispatched", after=mark, worker_id=target)}
                t_kill = stack.kill(target, signal.SIGKILL)
                results = await asyncio.gather(*tasks)
                return t_kill, affected, results

            t_kill, affected, results = run(submit_and_kill())
            lost = tap.find("worker.lost", timeout_s=3, after=t_kill, worker_id=target)
            t_lost = lost["_received"] if lost else None
            if lost is None or not affected:
                misses.append({"kill": k, "worker": target, "lost_event": lost is not None, "affected": len(affected)})
            else:
                detection.append(t_lost - t_kill)
                for job_id in affected:
                    again = tap.find("job.dispatched", after=t_lost - 0.05, job_id=job_id)
                    red = tap.find("job.redispatched", after=t_lost - 0.05, job_id=job_id)
                    if again is not None:
                        redispatch.append(again["_received"] - t_lost)
                    if red is not None:
                        redispatched_evt.append(red["_received"] - t_lost)
            wrong = [r for r, p in results if not check(r, p, False, 200)]
            log(f"  kill {k + 1}/{count} {target}: detection "
                f"{'-' if lost is None else f'{(t_lost - t_kill) * 1000:.0f} ms'}, {len(affected)} jobs affected, "
                f"{len(wrong)} of {len(results)} jobs not completed")
            if wrong:
                misses.append({"kill": k, "worker": target, "not_completed": [r.error_code or r.exception for r in wrong]})
            stack.restart(target, wait=True, timeout=20)
    finally:
        tap.stop()
    return {"kills": count, "detection_s": {"p50": _r(percentile(detection, 50)), "p99": _r(percentile(detection, 99)),
                                            "max": _r(max(detection) if detection else None), "n": len(detection)},
            "redispatch_s": {"p50": _r(percentile(redispatch, 50)), "p99": _r(percentile(redispatch, 99)),
                             "max": _r(max(redispatch) if redispatch else None), "n": len(redispatch)},
            "redispatched_event_s": {"p50": _r(percentile(redispatched_evt, 50)),
                                     "p99": _r(percentile(redispatched_evt, 99)), "n": len(redispatched_evt)},
            "misses": misses}


def _r(v):
    return None if v is None else round(v, 4)


def memory(load: Load, stack: LocalStack, rounds: int, per_round: int, conns: int, log) -> dict:
    before = rss_of(stack)
    per = []
    for i in range(rounds):
        r = run(load.closed_loop(conns, jobs=per_round))
        snap = rss_of(stack)
        per.append({"round": i + 1, "lost": r["lost"], "jobs_per_s": r["jobs_per_s"],
                    "rss_mib": {n: round(v["rss"] / 2**20, 1) for n, v in snap.items() if v}})
        log(f"  memory round {i + 1}: {r['jobs_per_s']} jobs/s lost {r['lost']} orchestrator "
            f"{per[-1]['rss_mib'].get('orchestrator')} MiB")
    after = rss_of(stack)
    growth = {n: {"before_mib": round(before[n]["rss"] / 2**20, 1), "after_mib": round(after[n]["rss"] / 2**20, 1),
                  "growth_mib": round((after[n]["rss"] - before[n]["rss"]) / 2**20, 1),
                  "engine_before_mib": round(before[n]["children_rss"] / 2**20, 1),
                  "engine_after_mib": round(after[n]["children_rss"] / 2**20, 1)}
              for n in stack.names if before.get(n) and after.get(n)}
    return {"rounds": rounds, "jobs_per_round": per_round, "connections": conns, "services": growth, "per_round": per,
            "lost": sum(p["lost"] for p in per)}
