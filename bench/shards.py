"""Sharded @integration wall time (`python -m bench.shards`): writes reports/bench/shards.json.

In one run, one after another on this machine (images already built: every run is --no-build):
- the selection (default --tags @integration) at N = 1, 2, 3 shards on this engine (N = 1 is the plain
  runner, one stack);
- with --two-engines, N = 2 again, spread over this engine and a second one started here
  (harness/local_engine.LocalEngine), whose image shipping is timed apart from the run.
Figures per run: wall seconds of the whole command, exit code, scenarios passed/failed, each shard's own
wall, and the ratio to N = 1. The best N's ratio is the issue's figure (goal <= 0.6).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine_info

ROOT = Path(__file__).resolve().parents[1]
RUNNER = str(ROOT / "run-integration-tests.sh")


def one_run(label: str, selection: list[str], extra: list[str], limit_s: float, reports: str) -> dict:
    """Run the suite once into the bench's report dir; its wall time and what its merged summary says."""
    began = time.monotonic()
    try:
        proc = subprocess.run([RUNNER, *selection, "--no-build", "--report-dir", reports, *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=limit_s)
        code, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
    except subprocess.TimeoutExpired as exc:
        code, tail = "timeout", str(exc.stdout or "")[-1500:]
    wall = round(time.monotonic() - began, 1)
    path = Path(reports) / "latest" / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    totals = summary.get("totals", {})
    out = {"label": label, "args": extra, "wall_s": wall, "exit_code": code, "passed": totals.get("passed"),
           "failed": totals.get("failed"), "total": totals.get("total"),
           "shard_walls_s": [r.get("wall_s") for r in summary.get("shard_runs", [])],
           "shipping_s": {url: s.get("total_s") for url, s in summary.get("shipping", {}).items()},
           "failures": [f.get("scenario") for f in summary.get("failures", [])][:10]}
    if code != 0:
        out["output_tail"] = tail
    print(json.dumps({k: v for k, v in out.items() if k != "output_tail"}), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shards", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tags", default="@integration")
    p.add_argument("--counts", default="1,2,3", help="shard counts to run, in this order (default 1,2,3)")
    p.add_argument("--two-engines", action="store_true", help="also N = 2 over this engine and a local second one")
    p.add_argument("--limit-min", type=float, default=30, help="stop a run after this many minutes")
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "shards.json"))
    args = p.parse_args(argv)
    selection = ["--tags", args.tags]
    runs = []
    with tempfile.TemporaryDirectory(prefix="apiary-bench-shards-") as reports:
        # one report dir for every run: the N = 1 run's summary.json gives the later runs their durations,
        # as reports/ does between real runs (without it every scenario counts the same)
        for n in (int(c) for c in args.counts.split(",")):
            runs.append(one_run(f"{n} shard(s), one engine", selection, ["--shards", str(n)], args.limit_min * 60,
                                reports))
        if args.two_engines:
            from harness.local_engine import LocalEngine
            with LocalEngine() as second:
                runs.append(one_run("2 shards, two engines (second local)", selection,
                                    ["--shards", "2", "--docker-host", "default", "--docker-host", second.url],
                                    args.limit_min * 60, reports))
    base = next((r["wall_s"] for r in runs if r["args"] == ["--shards", "1"]), None)
    for r in runs:
        r["ratio_to_1"] = round(r["wall_s"] / base, 3) if base else None
    ok = [r for r in runs if r["exit_code"] == 0 and r["args"] != ["--shards", "1"] and r["ratio_to_1"]]
    result = {"machine": machine_info(), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tags": args.tags,
              "runs": runs, "best_ratio": min((r["ratio_to_1"] for r in ok), default=None)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}: best ratio to N = 1 {result['best_ratio']}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
