"""Fault timing benchmark (`python -m bench.faults`): for every registered fault kind, N rounds of
apply -> verify -> heal against a real compose stack of its own; the time of apply + verify (until the
fault is proved in effect) per kind as p50 / p99 / max, and apply, verify and heal apart. Target (issue 9):
<= 300 ms p99 for the network kinds. Writes reports/bench/faults.json and prints a table.

Each round must verify (held) and heal fully; between rounds the stack is let settle (every service
healthy, 2 hives and 4 workers ready), untimed. Network kinds run 20 rounds by default, the slow process
and storage kinds 5. The both-ways and one-way partitions run a second time with the probes forced
through `docker exec` (the fallback where the harness cannot enter a container's network namespace),
to show what the namespace probe saves. Stack images: the runner's (scripts/build-images.sh; --no-build
uses the ones already built)."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine_info
from apiary_suite.load import percentile

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench" / "faults.json"
TARGET_P99_MS = 300
NETWORK_KINDS = ("partition", "loss")
# label -> (kind, target, params, probes forced through docker exec); every registered kind needs a row
CASES = {
    "partition both hive-a|worker-a1": ("partition", "hive-a|worker-a1", {}, False),
    "partition both orchestrator|hive-b": ("partition", "orchestrator|hive-b", {}, False),
    "partition one-way orchestrator->hive-b": ("partition", "orchestrator|hive-b", {"direction": "a->b"}, False),
    "partition one-way hive-a->orchestrator": ("partition", "hive-a|orchestrator", {"direction": "a->b"}, False),
    "loss 50% worker-b1": ("loss", "worker-b1", {"percent": 50}, False),
    "partition both hive-a|worker-a1 (exec probes)": ("partition", "hive-a|worker-a1", {}, True),
    "partition one-way orchestrator->hive-b (exec probes)": ("partition", "orchestrator|hive-b", {"direction": "a->b"}, True),
    "pause hive-b": ("pause", "hive-b", {}, False),
    "kill worker-a2": ("kill", "worker-a2", {}, False),
    "kill orchestrator": ("kill", "orchestrator", {}, False),
    "restart worker-b2": ("restart", "worker-b2", {}, False),
    "oom worker-b1": ("oom", "worker-b1", {}, False),
    "storage-read-only orchestrator": ("storage-read-only", "orchestrator", {}, False),
    "storage-corrupt orchestrator": ("storage-corrupt", "orchestrator", {}, False),
    "extra-workers 2 on hive-b": ("extra-workers", "hive-b", {"count": 2}, False),
}


def stats(values: list[float]) -> dict:
    """p50 / p99 / max (ms, 1 decimal) of a list of milliseconds (nearest rank, apiary_suite.load.percentile)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(percentile(values, 50), 1), "p99": round(percentile(values, 99), 1), "max": round(max(values), 1)}


def settle(stack, timeout_s: float = 60) -> float:
    """Wait (untimed in the figures) until every service is healthy and the cluster ready; returns seconds."""
    t0 = time.monotonic()
    stack.wait_healthy(timeout_s)
    stack.wait_ready(timeout_s)
    return time.monotonic() - t0


def one_round(stack, kind: str, target: str, params: dict) -> dict:
    """apply -> verify -> heal once; ms of each, whether verify held, what heal left, how probes ran."""
    from harness.nemesis.protocol import lookup
    t0 = time.monotonic()
    fault = lookup(kind).apply(stack, target, **params)
    t1 = time.monotonic()
    try:
        verdict = fault.verify()
        t2 = time.monotonic()
    finally:
        t_heal = time.monotonic()
        left = fault.heal()
        t3 = time.monotonic()
    ev = verdict.get("evidence") if isinstance(verdict.get("evidence"), dict) else {}
    via = sorted({p.get("via") for p in ev.get("probes", []) if p.get("via")})
    return {"apply_ms": (t1 - t0) * 1000, "verify_ms": (t2 - t1) * 1000, "total_ms": (t2 - t0) * 1000,
            "heal_ms": (t3 - t_heal) * 1000, "held": bool(verdict.get("held")), "unhealed": left, "via": via,
            "first_read": "first_read" in ev,
            "evidence": ev if not verdict.get("held") else None}


def healthy_probes(stack, n: int = 50) -> dict:
    """ms of `n` namespace connect probes across a healthy link (hive-a -> worker-a1:8001): how far below
    the partition's probe timeout a crossing connect completes."""
    from harness.nemesis.probes import probe
    from harness.nemesis.protocol import live_networks
    src_ip = live_networks(stack, "hive-a")["hive-a-net"]["ip"]
    dst_ip = live_networks(stack, "worker-a1")["hive-a-net"]["ip"]
    times, results = [], set()
    for _ in range(n):
        t0 = time.perf_counter()
        got = probe(stack, "hive-a", dst_ip, 8001, 1.0, src_ip=src_ip)
        times.append((time.perf_counter() - t0) * 1000)
        results.add(f"{got['result']} via {got['via']}")
    return {"n": n, "results": sorted(results), **stats(times)}


def measure_case(stack, label: str, kind: str, target: str, params: dict, exec_probes: bool, rounds: int) -> dict:
    """`rounds` rounds of one case; a round that raised, did not verify or did not heal is counted and kept."""
    from harness.nemesis import probes
    rows, failures = [], []
    probes.enabled = not exec_probes
    try:
        for i in range(rounds):
            try:
                row = one_round(stack, kind, target, params)
            except Exception as exc:  # noqa: BLE001 - recorded; the stack is repaired before the next round
                failures.append({"round": i, "error": repr(exc)[:400]})
                stack.heal()
            else:
                rows.append(row)
                if not row["held"] or row["unhealed"]:
                    failures.append({"round": i, "held": row["held"], "unhealed": row["unhealed"],
                                     "evidence": row["evidence"]})
            settle(stack)
    finally:
        probes.enabled = True
    out = {"kind": kind, "target": target, "params": params, "rounds": rounds, "n": len(rows),
           "verified": sum(r["held"] for r in rows), "probe_via": sorted({v for r in rows for v in r["via"]}),
           "held_by_the_parallel_first_read": sum(r["first_read"] for r in rows),
           "failures": failures}
    for key in ("total_ms", "apply_ms", "verify_ms", "heal_ms"):
        out[key] = stats([r[key] for r in rows])
    return out


def table(result: dict) -> str:
    """The figures as a plain text table."""
    lines = [f"{'case':52} {'n':>3} {'ok':>3}  {'p50':>7} {'p99':>7} {'max':>7}   apply p50 / verify p50 / heal p50 (ms)"]
    for label, r in result["cases"].items():
        t = r["total_ms"]
        fmt = lambda v: f"{v:7.1f}" if v is not None else "      -"   # noqa: E731
        lines.append(f"{label:52} {r['n']:3d} {r['verified']:3d}  {fmt(t['p50'])} {fmt(t['p99'])} {fmt(t['max'])}   "
                     f"{r['apply_ms']['p50']} / {r['verify_ms']['p50']} / {r['heal_ms']['p50']}")
    h = result.get("healthy_link_probe_ms") or {}
    lines.append(f"a probe across a healthy link (incl. container lookup): p50 {h.get('p50')} p99 {h.get('p99')} "
                 f"max {h.get('max')} ms ({', '.join(h.get('results', []))})")
    m = result["machine"]
    lines.append(f"machine: nproc {m['nproc']}, load average at start {m['loadavg_start']}; network kinds p99 <= "
                 f"{TARGET_P99_MS} ms: {result['network_meets_target']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds-network", type=int, default=20, help="rounds per network case (partition, loss)")
    p.add_argument("--rounds-slow", type=int, default=5, help="rounds per process/storage/worker case")
    p.add_argument("--only", default="", metavar="KIND,KIND", help="measure only these kinds")
    p.add_argument("--no-build", dest="build", action="store_false", help="use the apiary/* images already built")
    p.add_argument("--out", default=str(REPORT))
    args = p.parse_args(argv)

    from apiary_suite.cluster import Cluster
    from harness.nemesis.protocol import REGISTRY
    from apiary_suite.entry import build_images
    from harness.sweep import sweep
    missing = sorted(set(REGISTRY) - {c[0] for c in CASES.values()})
    if missing:
        raise SystemExit(f"bench.faults has no case for the registered kind(s) {missing}: add a row to CASES")
    only = {k for k in args.only.split(",") if k}
    result: dict = {"machine": machine_info(), "target_p99_ms": TARGET_P99_MS, "cases": {}}
    run_id = "bench-faults-" + secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="apiary-bench-faults-") as build_dir:   # the build log
        result["images"] = build_images(Path(build_dir), args.build)
    stack = Cluster(run_id)
    try:
        stack.up(180)
        settle(stack)
        result["healthy_link_probe_ms"] = healthy_probes(stack)
        for label, (kind, target, params, exec_probes) in CASES.items():
            if only and kind not in only:
                continue
            rounds = args.rounds_network if kind in NETWORK_KINDS else args.rounds_slow
            print(f"[bench.faults] {label}: {rounds} rounds", file=sys.stderr, flush=True)
            result["cases"][label] = measure_case(stack, label, kind, target, params, exec_probes, rounds)
    finally:
        stack.down()
        result["leftovers"] = sweep(stack.client, run_id, stack.project)
    network = [r for label, r in result["cases"].items() if r["kind"] in NETWORK_KINDS and "exec probes" not in label]
    result["network_meets_target"] = bool(network) and all(
        r["total_ms"]["p99"] is not None and r["total_ms"]["p99"] <= TARGET_P99_MS and r["verified"] == r["rounds"]
        for r in network)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
