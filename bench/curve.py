"""CURVE's cost, side by side in one run (`python -m bench.curve`): writes reports/bench/curve.json.

Two local stacks (orchestrator + 2 hives + 4 workers each) are up at once, one with CURVE on every ZeroMQ
link and one with APIARY_CURVE=off. Rounds alternate between them (on, off, on, off, ...) so both see the
same machine noise; each round is a closed-loop run of 1-token jobs (jobs/s, p50) and an open-loop run at a
fixed rate (p50, p99 from the scheduled instant). Reported: per-arm medians over the rounds and on/off ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench.common import machine_info
from bench.e2e_load import Load, run
from services.stack import ROOT, LocalStack, StackError

REPORT = ROOT / "reports" / "bench" / "curve.json"


def one_round(load: Load, conns: int, duration_s: float, rate: float) -> dict:
    """One closed-loop and one open-loop run against one stack."""
    closed = run(load.closed_loop(conns, duration_s=duration_s))
    opened = run(load.open_loop(rate, duration_s))
    return {"jobs_per_s": closed["jobs_per_s"], "closed_p50_ms": closed["latency_ms"]["p50"],
            "open_p50_ms": opened["latency_ms"]["p50"], "open_p99_ms": opened["latency_ms"]["p99"],
            "lost": closed["lost"] + opened["lost"]}


def medians(rounds: list[dict]) -> dict:
    """The median of each figure over the rounds (lost: the sum)."""
    keys = [k for k in rounds[0] if k != "lost"]
    out = {k: round(statistics.median(r[k] for r in rounds), 2) for k in keys}
    out["lost"] = sum(r["lost"] for r in rounds)
    return out


def start_stack(worker_env: dict, curve: bool, attempts: int = 3) -> LocalStack:
    """Start one local stack; retry when a port picked as free was taken meanwhile by another process."""
    for attempt in range(attempts):
        stack = LocalStack(worker_env=worker_env, curve=curve)
        try:
            return stack.start()
        except StackError:
            stack.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per arm (alternating)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per closed- and open-loop run")
    parser.add_argument("--conns", type=int, default=32, help="connections of the closed loop")
    parser.add_argument("--rate", type=float, default=150.0, help="jobs/s of the open loop")
    parser.add_argument("--out", default=str(REPORT))
    args = parser.parse_args(argv)
    worker_env = {"APIARY_SLOTS": "4", "APIARY_TOKENS_PER_S": "200"}
    arms = {"curve": True, "plain": False}
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    t0 = time.monotonic()
    stacks: dict[str, LocalStack] = {}
    try:
        for arm, on in arms.items():
            stacks[arm] = start_stack(worker_env, on)
        loads = {arm: Load(stack) for arm, stack in stacks.items()}
        for load in loads.values():
            run(load.closed_loop(16, jobs=500))  # warm-up
        for i in range(args.rounds):
            for arm in (arms if i % 2 == 0 else reversed(list(arms))):
                r = one_round(loads[arm], args.conns, args.duration, args.rate)
                results[arm].append(r)
                print(f"round {i + 1} {arm}: {r}", file=sys.stderr, flush=True)
    finally:
        for stack in stacks.values():
            stack.stop()
    summary = {arm: medians(rs) for arm, rs in results.items()}
    ratio = {k: round(summary["curve"][k] / summary["plain"][k], 3) for k in summary["curve"]
             if k != "lost" and summary["plain"][k]}
    report = {"machine": machine_info(), "command": "python -m bench.curve " + " ".join(argv or sys.argv[1:]),
              "design": "two local stacks up at once, rounds alternating curve/plain, medians over rounds",
              "settings": vars(args), "rounds": results, "median": summary, "ratio_curve_over_plain": ratio,
              "duration_s": round(time.monotonic() - t0, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({"median": summary, "ratio_curve_over_plain": ratio}, indent=2))
    print(f"written {out}")
    return 1 if any(s["lost"] for s in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
