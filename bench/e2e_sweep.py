"""Latency against offered load (`python -m bench.e2e_sweep`): open-loop runs at a few rates against the local
stack bench.e2e uses (orchestrator, 2 hives, 4 workers), non-streamed and streamed; writes
reports/bench/e2e-sweep.json for bench/charts.py. Open loop as in bench.e2e: request i is due at t0 + i/rate and
its latency counts from then, so a saturated stack shows as a rising curve rather than a hidden queue. The sweep
stops after the first rate whose median latency passes 500 ms (saturated: higher rates only queue longer)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.common import machine_info
from bench.e2e_load import Load, run
from services.stack import ROOT, LocalStack

REPORT = ROOT / "reports" / "bench" / "e2e-sweep.json"
RATES = "50,100,200,300,400,600,800,1200,1600"
SATURATED_P50_MS = 500.0    # a median above this means requests queue: the sweep ends


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=RATES, help=f"offered loads in jobs/s (default {RATES})")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per rate and mode (default 4)")
    parser.add_argument("--modes", default="non_streamed,streamed", help="non_streamed and/or streamed")
    parser.add_argument("--slots", type=int, default=4, help="APIARY_SLOTS of each worker")
    parser.add_argument("--out", default=str(REPORT))
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    report: dict = {"machine": machine_info(), "command": "python -m bench.e2e_sweep " + " ".join(argv or sys.argv[1:]),
                    "stack": {"hives": 2, "workers_per_hive": 2, "slots": args.slots}, "seconds_per_rate": args.seconds,
                    "saturation_rule": f"stop after a rate whose p50 exceeds {SATURATED_P50_MS:g} ms",
                    "runs": {m: [] for m in modes}}
    t_start = time.monotonic()
    worker_env = {"APIARY_SLOTS": str(args.slots), "APIARY_TOKENS_PER_S": "200"}
    with LocalStack(hives=2, workers_per_hive=2, worker_env=worker_env) as stack:
        load = Load(stack)
        run(load.closed_loop(16, jobs=1000))       # warm-up, as bench.e2e
        for rate in rates:
            p50s = []
            for mode in modes:
                r = run(load.open_loop(rate, args.seconds, mode == "streamed"))
                r["offered_per_s"] = rate
                report["runs"][mode].append(r)
                lat = r.get("ttft_ms") if mode == "streamed" else r["latency_ms"]
                p50s.append(lat["p50"] if lat["p50"] is not None else float("inf"))
                print(f"{mode:<13} offered {rate:>6.0f}/s  served {r['jobs_per_s']:>7}/s  p50 {lat['p50']} ms  "
                      f"p99 {lat['p99']} ms  lost {r['lost']}", flush=True)
            if max(p50s) > SATURATED_P50_MS:
                report["saturated_at_per_s"] = rate
                print(f"saturated at {rate:.0f}/s: higher rates skipped", flush=True)
                break
    report["duration_s"] = round(time.monotonic() - t_start, 1)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
