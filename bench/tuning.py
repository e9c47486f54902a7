"""Tuning profiles (`python -m bench.tuning`): docs/tuning.md's figures, measured in one run.

Each profile (its environment variables and worker slots) runs `python -m bench.e2e --quick` ROUNDS times, the
profiles interleaved in alternating order (A B C D, D C B A, ...) so a drift of this shared machine's speed
falls on every profile alike; each run writes reports/bench/tuning-<profile>-r<k>.json. Then the capacity
table: examples.client against a local stack per slot count, 20-token streamed jobs at 200 tokens/s (100 ms of
generation), concurrency one and two per slot. Writes reports/bench/tuning.json (medians, ranges, every run)
and prints the tables in docs/tuning.md's layout."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine_info
from services.stack import ROOT, LocalStack

OUT = ROOT / "reports" / "bench"
PROFILES: dict[str, dict] = {
    "default": {"slots": 4, "env": {}, "parts": "open,peak,memory,kills"},
    "low-latency": {"slots": 4, "parts": "open,peak,kills",
                    "env": {"APIARY_HEARTBEAT_INTERVAL_S": "0.1", "APIARY_HEARTBEAT_LIVENESS": "3",
                            "APIARY_QUEUE_MAX": "64", "APIARY_REQUEST_TIMEOUT_S": "5"}},
    "high-throughput": {"slots": 16, "parts": "open,peak",
                        "env": {"APIARY_QUEUE_MAX": "4096", "APIARY_HEARTBEAT_INTERVAL_S": "0.5"}},
    "small-memory": {"slots": 2, "parts": "open,peak,memory",
                     "env": {"APIARY_FINISHED_JOBS_MAX": "2000", "APIARY_QUEUE_MAX": "256"}},
}
CAPACITY = [(2, 1), (2, 2), (4, 1), (4, 2)]   # (APIARY_SLOTS per worker, requests in flight per slot)
WORKERS = 4
RUN_DEADLINE_S = 600.0


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def run_profile(name: str, k: int, out_dir: Path) -> dict:
    """One bench.e2e --quick run of a profile; its report."""
    p = PROFILES[name]
    out = out_dir / f"tuning-{name}-r{k}.json"
    cmd = [sys.executable, "-m", "bench.e2e", "--quick", "--only", p["parts"], "--slots", str(p["slots"]),
           "--out", str(out)] + [a for kv in p["env"].items() for a in ("--env", "=".join(kv))]
    log(f"[{name} r{k}] {' '.join(cmd[1:])}")
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=RUN_DEADLINE_S)
    if done.returncode != 0:
        raise SystemExit(f"bench.e2e failed for profile {name} round {k} (exit {done.returncode}); see its stderr above")
    return json.loads(out.read_text())


def figures(report: dict) -> dict:
    """The columns of docs/tuning.md's profile table, from one bench.e2e report."""
    f: dict = {}
    if "peak" in report:
        f["peak_non_streamed"] = report["peak"]["non_streamed"]["peak_jobs_per_s"]
        f["peak_streamed"] = report["peak"]["streamed"]["peak_jobs_per_s"]
    if "open_loop" in report:
        ns, st = report["open_loop"]["non_streamed"], report["open_loop"]["streamed"]
        f.update(open_p50_ms=ns["latency_ms"]["p50"], open_p99_ms=ns["latency_ms"]["p99"],
                 ttft_p50_ms=st["ttft_ms"]["p50"], ttft_p99_ms=st["ttft_ms"]["p99"],
                 open_refused=ns["lost"] + st["lost"])
    if "kills" in report:
        f.update(detect_p50_s=report["kills"]["detection_s"]["p50"], detect_p99_s=report["kills"]["detection_s"]["p99"])
    if "memory" in report:
        o = report["memory"]["services"]["orchestrator"]
        f.update(rss_before_mib=o["before_mib"], rss_after_mib=o["after_mib"])
    return f


def summarise(runs: list[dict]) -> dict:
    """Median and range of every column over a profile's runs."""
    keys = sorted({k for r in runs for k in r})
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            out[k] = {"median": round(statistics.median(vals), 3), "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def run_capacity(slots: int, per_slot: int, count_per_conn: int) -> dict:
    """examples.client against a fresh local stack with `slots` per worker; its JSON summary plus the setting."""
    worker_env = {"APIARY_SLOTS": str(slots), "APIARY_TOKENS_PER_S": "200"}
    total = slots * WORKERS
    conc = total * per_slot
    with LocalStack(hives=2, workers_per_hive=2, worker_env=worker_env) as stack:
        cmd = [sys.executable, "-m", "examples.client", "--base-url", stack.api_url, "--key", stack.key, "--json",
               "--no-progress", "--stream", "--max-tokens", "20", "--count", str(count_per_conn * conc),
               "--concurrency", str(conc)]
        log(f"[capacity] slots {total} concurrency {conc}")
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_DEADLINE_S)
    if done.returncode != 0:
        raise SystemExit(f"examples.client failed at {total} slots x {conc} (exit {done.returncode}): {done.stderr[-400:]}")
    s = json.loads(done.stdout)
    return {"slots": total, "concurrency": conc, "jobs_per_s": s["throughput_rps"],
            "per_slot": round(s["throughput_rps"] / total, 2), "latency_ms": s["latency_ms"], "errors": s.get("errors"),
            "failed": s.get("failed"),
            "ok": s.get("ok")}


def profile_table(summary: dict) -> str:
    """docs/tuning.md's profile table: medians with the range in brackets."""
    def cell(p: dict, *keys: str, unit: str = "") -> str:
        parts = []
        for k in keys:
            c = p.get(k)
            parts.append("" if c is None else f"{c['median']:g} ({c['min']:g}–{c['max']:g})")
        return " / ".join(parts) + unit if any(parts) else ""
    rows = ["| profile | peak jobs/s, non-streamed / streamed | open loop 200/s: p50 / p99 ms | TTFT p50 / p99 ms "
            "| kill -9 detection p50 / p99 s | orchestrator RSS MiB, before → after |", "|---|---|---|---|---|---|"]
    for name, p in summary.items():
        rss = p.get("rss_after_mib")
        rss_text = "" if rss is None else f"{p['rss_before_mib']['median']:g} → {rss['median']:g}"
        rows.append(f"| {name} | {cell(p, 'peak_non_streamed', 'peak_streamed')} | {cell(p, 'open_p50_ms', 'open_p99_ms')} "
                    f"| {cell(p, 'ttft_p50_ms', 'ttft_p99_ms')} | {cell(p, 'detect_p50_s', 'detect_p99_s')} "
                    f"| {rss_text} |")
    return "\n".join(rows)


def capacity_table(rows: list[dict]) -> str:
    """docs/tuning.md's capacity table."""
    out = ["| slots | concurrency | jobs/s | per slot | latency p50 / p99 ms | errors |", "|---|---|---|---|---|---|"]
    for r in rows:
        lat = r["latency_ms"] or {}
        out.append(f"| {r['slots']} | {r['concurrency']} | {r['jobs_per_s']} | {r['per_slot']} "
                   f"| {lat.get('p50')} / {lat.get('p99')} | {r['errors']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the profiles interleaved, then the capacity table; write tuning.json and print both tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per profile (default 3)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="which profiles, comma-separated")
    parser.add_argument("--count-per-connection", type=int, default=40, help="capacity: requests per client connection")
    parser.add_argument("--skip-capacity", action="store_true")
    parser.add_argument("--out-dir", default=str(OUT))
    args = parser.parse_args(argv)
    names = args.profiles.split(",")
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        parser.error(f"--profiles: unknown {', '.join(unknown)} (known: {', '.join(PROFILES)})")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": machine_info(), "command": "python -m bench.tuning " + " ".join(argv or sys.argv[1:]),
                    "profiles": {n: PROFILES[n] for n in names}, "runs": {n: [] for n in names}, "order": []}
    t0 = time.monotonic()
    for k in range(1, args.rounds + 1):
        for name in (names if k % 2 else list(reversed(names))):
            report["order"].append(f"{name}-r{k}")
            report["runs"][name].append(figures(run_profile(name, k, out_dir)))
    report["summary"] = {n: summarise(report["runs"][n]) for n in names}
    if not args.skip_capacity:
        report["capacity"] = [run_capacity(s, c, args.count_per_connection) for s, c in CAPACITY]
    report["duration_s"] = round(time.monotonic() - t0, 1)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = out_dir / "tuning.json"
    out.write_text(json.dumps(report, indent=2))
    print(profile_table(report["summary"]))
    if report.get("capacity"):
        print()
        print(capacity_table(report["capacity"]))
    print(f"\nwritten {out} in {report['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
