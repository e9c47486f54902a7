"""End-to-end benchmark of the local stack (`python -m bench.e2e`): writes reports/bench/e2e.json and prints a table.

Measures, through HTTP on 127.0.0.1 against `services.stack.LocalStack` (orchestrator + 2 hives + 4 workers):
* peak jobs/s of 1-token jobs with 0 lost (closed loop, N keep-alive connections, N swept), non-streamed and streamed;
* latency p50/p99 at a fixed 200 jobs/s (open loop: request i is due at t0 + i/rate, latency counted from
  that instant so a stall is not hidden), non-streamed (full response) and streamed (time to first token);
* worker-loss detection (kill -9 -> `worker.lost` on the PUB socket) and re-dispatch (`worker.lost` -> the
  affected job's next `job.dispatched`) over >= 20 kills, the worker restarted between kills;
* RSS (psutil) of every service before and after 10 rounds of 1,000 jobs.

Load generator: an asyncio (uvloop) client on raw streams in this process (bench.common.Conn) - it checks
every answer's text; `wrk` (C, Debian package) is used as a cross-check of the non-streamed peak when installed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import Conn, Result, job_body, machine_info, ms, percentile, split_url
from services.protocol import generate_text
from services.stack import ROOT, LocalStack

REPORT = ROOT / "reports" / "bench" / "e2e.json"
TARGETS = {"peak_jobs_per_s": 1500, "p50_ms_at_200": 2.0, "p99_ms_at_200": 5.0, "detection_p99_s": 1.0,
           "redispatch_p99_s": 0.25}
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
    time.sleep(0.3)
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
                affected = {e["job_id"] for t, e in tap.events if t >= mark and e.get("topic") == "job.dispatched"
                            and e.get("worker_id") == target}
                t_kill = stack.kill(target, signal.SIGKILL)
                results = await asyncio.gather(*tasks)
                return t_kill, affected, results

            t_kill, affected, results = run(submit_and_kill())
            lost = tap.wait_for("worker.lost", timeout=3, after=t_kill, worker_id=target)
            if lost is None or not affected:
                misses.append({"kill": k, "worker": target, "lost_event": lost is not None, "affected": len(affected)})
            else:
                detection.append(lost[0] - t_kill)
                for job_id in affected:
                    again = tap.find("job.dispatched", after=lost[0] - 0.05, job_id=job_id)
                    red = tap.find("job.redispatched", after=lost[0] - 0.05, job_id=job_id)
                    if again is not None:
                        redispatch.append(again[0] - lost[0])
                    if red is not None:
                        redispatched_evt.append(red[0] - lost[0])
            wrong = [r for r, p in results if not check(r, p, False, 200)]
            log(f"  kill {k + 1}/{count} {target}: detection "
                f"{'-' if lost is None else f'{(lost[0] - t_kill) * 1000:.0f} ms'}, {len(affected)} jobs affected, "
                f"{len(wrong)} of {len(results)} jobs not completed")
            if wrong:
                misses.append({"kill": k, "worker": target, "not_completed": [r.error_code or r.exception for r in wrong]})
            stack.restart(target, wait=True, timeout=20)
    finally:
        tap.close()
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


def any_lost(report: dict) -> int:
    """Jobs lost anywhere in the report (the service logs are then kept for diagnosis)."""
    total = 0
    for part in (report.get("peak") or {}).values():
        for r in (part or {}).get("runs", []) if isinstance(part, dict) else []:
            total += r["lost"]
    total += sum(r["lost"] for r in (report.get("open_loop") or {}).values())
    total += (report.get("memory") or {}).get("lost", 0)
    total += sum(c["lost"] for c in (report.get("cpu_per_job") or {}).values())
    return total


def table(report: dict) -> str:
    rows = []

    def row(name, value, target="", ok=None):
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        rows.append(f"| {name:<52} | {value:>22} | {target:>12} | {mark:>6} |")

    p = report.get("peak", {})
    if p:
        v = p["non_streamed"]["peak_jobs_per_s"]
        row("peak jobs/s, 1 token, non-streamed, 0 lost", f"{v} (conns {p['non_streamed']['at_connections']})",
            ">= 1500", v >= TARGETS["peak_jobs_per_s"])
        v = p["streamed"]["peak_jobs_per_s"]
        row("peak jobs/s, 1 token, streamed, 0 lost", f"{v} (conns {p['streamed']['at_connections']})", "", None)
        if p.get("wrk"):
            w = p["wrk"]
            row(f"  wrk cross-check, non-streamed (c={w['connections']})", f"{w['jobs_per_s']} (lost {w['lost']})")
    o = report.get("open_loop", {})
    if o:
        ns, st = o["non_streamed"], o["streamed"]
        row(f"latency p50 @ {ns['rate']:.0f}/s, non-streamed (ms)", ns["latency_ms"]["p50"], "<= 2",
            (ns["latency_ms"]["p50"] or 1e9) <= 2)
        row(f"latency p99 @ {ns['rate']:.0f}/s, non-streamed (ms)", ns["latency_ms"]["p99"], "<= 5",
            (ns["latency_ms"]["p99"] or 1e9) <= 5)
        row(f"TTFT p50 @ {st['rate']:.0f}/s, streamed (ms)", st["ttft_ms"]["p50"], "<= 2", (st["ttft_ms"]["p50"] or 1e9) <= 2)
        row(f"TTFT p99 @ {st['rate']:.0f}/s, streamed (ms)", st["ttft_ms"]["p99"], "<= 5", (st["ttft_ms"]["p99"] or 1e9) <= 5)
        row("lost at 200/s (non-streamed / streamed)", f"{ns['lost']} / {st['lost']}", "0", ns["lost"] + st["lost"] == 0)
    k = report.get("kills", {})
    if k:
        d, r = k["detection_s"], k["redispatch_s"]
        row(f"detection kill->worker.lost p50/p99 (s, n={d['n']})", f"{d['p50']} / {d['p99']}", "p99 <= 1",
            d["p99"] is not None and d["p99"] <= 1)
        row(f"re-dispatch worker.lost->job.dispatched p50/p99 (s, n={r['n']})", f"{r['p50']} / {r['p99']}", "<= 0.25",
            r["p99"] is not None and r["p99"] <= 0.25)
    c = report.get("cpu_per_job", {})
    if c:
        for kind, v in c.items():
            row(f"CPU us/job {kind}: total (ceiling jobs/s on 2 CPUs)",
                f"{v['total_cpu_us_per_job']:.0f} ({v['cpu_bound_ceiling_jobs_per_s']:.0f})")
            row("  of which " + ", ".join(f"{k} {u:.0f}" for k, u in list(v["per_kind_us"].items())[:3]), "")
    m = report.get("memory", {})
    if m:
        for name, g in m["services"].items():
            row(f"RSS {name} before -> after (MiB)", f"{g['before_mib']} -> {g['after_mib']}",
                "bounded" if name == "orchestrator" else "", None)
        row(f"memory rounds lost ({m['rounds']} x {m['jobs_per_round']})", m["lost"], "0", m["lost"] == 0)
    head = f"| {'measure':<52} | {'value':>22} | {'target':>12} | {'':>6} |"
    return "\n".join([head, "|" + "-" * 54 + "|" + "-" * 24 + "|" + "-" * 14 + "|" + "-" * 8 + "|", *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke), fewer kills and rounds")
    parser.add_argument("--sweep", default="8,16,32,64,128", help="connection counts for the peak search")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per closed-loop run")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--open-seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--slots", type=int, default=4, help="APIARY_SLOTS of each worker")
    parser.add_argument("--only", default="cpu,peak,open,memory,kills", help="which parts to run")
    parser.add_argument("--out", default=str(REPORT))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every service (repeatable), e.g. APIARY_FINISHED_JOBS_MAX=2000")
    parser.add_argument("--keep", action="store_true", help="keep the stack's temp dir (service logs) for diagnosis")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.open_seconds, args.kills, args.rounds = 2.0, 3.0, 3, 2
    parts = set(args.only.split(","))
    sweep = [int(x) for x in args.sweep.split(",")]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    worker_env = {"APIARY_SLOTS": str(args.slots), "APIARY_TOKENS_PER_S": "200"}
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    report: dict = {"machine": machine_info(), "command": "python -m bench.e2e " + " ".join(argv or sys.argv[1:]),
                    "stack": {"hives": 2, "workers_per_hive": 2, "worker_env": worker_env, "env": extra_env,
                              "defaults": "heartbeat 0.2 s x liveness 4, queue 1024, log level info"},
                    "load_generator": "asyncio+uvloop client on raw keep-alive streams in the benchmark process "
                                      "(bench/common.py Conn), every answer's text checked; wrk (C) cross-check",
                    "targets": TARGETS}
    t_start = time.monotonic()
    with LocalStack(hives=2, workers_per_hive=2, env=extra_env, worker_env=worker_env, keep=True) as stack:
        report["stack"]["workdir"] = str(stack.workdir)
        load = Load(stack)
        log(f"stack up at {stack.api_url}; warm-up")
        run(load.closed_loop(16, jobs=1000))
        if "cpu" in parts:
            log("cpu per job (psutil cpu_times around 3000 jobs)")
            report["cpu_per_job"] = {"non_streamed": cpu_per_job(load, stack, 3000, 32, False),
                                     "streamed": cpu_per_job(load, stack, 3000, 32, True)}
            for kind, c in report["cpu_per_job"].items():
                log(f"  {kind}: {c['per_kind_us']} total {c['total_cpu_us_per_job']} us/job -> ceiling "
                    f"{c['cpu_bound_ceiling_jobs_per_s']} jobs/s on {psutil.cpu_count()} CPUs")
        if "memory" in parts:
            log("memory: rounds of jobs")
            report["memory"] = memory(load, stack, args.rounds, 1000, 32, log)
        if "peak" in parts:
            log("peak: closed loop sweep")
            report["peak"] = {"non_streamed": peak(load, False, sweep, args.duration, log),
                              "streamed": peak(load, True, sweep, args.duration, log)}
            best = report["peak"]["non_streamed"]["at_connections"] or 64
            report["peak"]["wrk"] = wrk_peak(stack, best, max(2, int(args.duration)))
            if report["peak"]["wrk"]:
                log(f"  wrk c={best}: {report['peak']['wrk']['jobs_per_s']} req/s lost {report['peak']['wrk']['lost']}")
        if "open" in parts:
            log(f"open loop at {args.rate}/s for {args.open_seconds}s")
            report["open_loop"] = {"non_streamed": run(load.open_loop(args.rate, args.open_seconds, False)),
                                   "streamed": run(load.open_loop(args.rate, args.open_seconds, True))}
            for kind, r in report["open_loop"].items():
                log(f"  {kind}: p50 {r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms "
                    f"ttft {r.get('ttft_ms')} lost {r['lost']}")
        if "kills" in parts:
            log(f"kills: {args.kills} x kill -9 with jobs in flight")
            report["kills"] = kills(stack, args.kills, log)
    report["duration_s"] = round(time.monotonic() - t_start, 1)
    lost = any_lost(report)
    if lost or args.keep:
        log(f"service logs kept in {stack.workdir}/logs" + (f" ({lost} jobs lost: look there)" if lost else ""))
    else:
        shutil.rmtree(stack.workdir, ignore_errors=True)
        report["stack"]["workdir"] = None
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
