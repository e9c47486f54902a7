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
import json
import os
import shutil
import sys
import time
from pathlib import Path

import psutil

from bench.common import machine_info
from bench.e2e_load import Load, run
from bench.e2e_measure import cpu_per_job, kills, memory, peak, wrk_peak
from bench.e2e_report import TARGETS, any_lost, table
from services.stack import ROOT, LocalStack

REPORT = ROOT / "reports" / "bench" / "e2e.json"


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
