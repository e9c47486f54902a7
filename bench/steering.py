"""End-to-end jobs/s with the link-quality mechanism (`python -m bench.steering`), side by side in one run.

Against the compose stack (images built by scripts/build-images.sh), through HTTP on its published port:
closed-loop 1-token non-streamed jobs (bench.e2e_load.Load, every answer's text checked) for --seconds per
arm, the arms alternating in order and reverse order over --rounds:
* not installed: the harness's proxy server stopped, no rule: the stack as it is without the mechanism;
* installed, no toxic: the proxy server running in the harness, no rule, no proxy: the services talk directly
  (the mechanism's state whenever no toxic is active);
* hive links steered: orchestrator|hive-a and orchestrator|hive-b run through the harness's proxy, no toxic;
* all links steered: those two and the four hive|worker links, no toxic.
The unsteered arms after the first round run after a heal, so they also show that unsteering restores the
direct path. Writes reports/bench/steering.json with every run, the median jobs/s of each arm and each
arm's ratio to "not installed"."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from bench.common import machine_info
from bench.e2e_load import Load, run

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench" / "steering.json"
HIVE_LINKS = ["orchestrator|hive-a", "orchestrator|hive-b"]
WORKER_LINKS = ["hive-a|worker-a1", "hive-a|worker-a2", "hive-b|worker-b1", "hive-b|worker-b2"]
ARMS = {"not installed": [], "installed, no toxic": [], "hive links steered": HIVE_LINKS,
        "all links steered": HIVE_LINKS + WORKER_LINKS}
BASE = "not installed"


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def measure(load: Load, connections: int, seconds: float) -> dict:
    """One closed-loop run; its summary (jobs/s of answers whose text checked, lost, latency)."""
    return run(load.closed_loop(connections, duration_s=seconds))


def steer_arm(stack, arm: str) -> tuple[list, float]:
    """Put the arm in place: the proxy server stopped or running, the links steered (no toxic); the
    steerings and the seconds it took."""
    import harness.nemesis.protocol  # noqa: F401 - the fault registry first (steering is imported through it)
    from harness.nemesis.steering import server, steer, stop_server
    t0 = time.monotonic()
    if arm == BASE:
        stop_server()
    else:
        server()
    made = [steer(stack, link) for link in ARMS[arm]]
    return made, time.monotonic() - t0


def heal_arm(made: list) -> list[str]:
    """Unsteer; what could not be undone."""
    left: list[str] = []
    for s in made:
        left += s.unsteer()
    return left


def paired_ratios(runs: list[dict]) -> dict[str, dict]:
    """Each arm's jobs/s over the same round's "not installed" run: median and range over the rounds."""
    out = {}
    for arm in ARMS:
        ratios = []
        for k in sorted({r["round"] for r in runs}):
            base = [r["jobs_per_s"] for r in runs if r["round"] == k and r["arm"] == BASE]
            this = [r["jobs_per_s"] for r in runs if r["round"] == k and r["arm"] == arm]
            if base and this and base[0]:
                ratios.append(this[0] / base[0])
        if ratios:
            out[arm] = {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
                        "max": round(max(ratios), 3), "rounds": len(ratios)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Bring the stack up, alternate the arms, write the report; exit 1 if a job was lost or a heal left something."""
    parser = argparse.ArgumentParser(prog="python -m bench.steering", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="closed-loop seconds per arm and round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", default=str(REPORT))
    args = parser.parse_args(argv)
    from apiary_suite.cluster import Cluster
    report: dict = {"machine": machine_info(), "command": "python -m bench.steering " + " ".join(argv or sys.argv[1:]),
                    "arms": ARMS, "runs": [], "load": f"closed loop, {args.connections} connections, 1-token "
                                                      "non-streamed jobs, answers checked (bench.e2e_load)"}
    stack = Cluster(f"bench-steer-{secrets.token_hex(3)}")
    left: list[str] = []
    try:
        stack.up(180)
        stack.wait_ready(60)
        load = Load(SimpleNamespace(api_url=stack.api_url, keys=stack.api_keys))
        log(f"stack {stack.project} up at {stack.api_url}; warm-up")
        measure(load, args.connections, 2.0)
        names = list(ARMS)
        for k in range(args.rounds):
            for arm in (names if k % 2 == 0 else list(reversed(names))):
                made, took = steer_arm(stack, arm)
                try:
                    r = measure(load, args.connections, args.seconds)
                finally:
                    left += heal_arm(made)
                stack.wait_ready(30)
                report["runs"].append({"round": k + 1, "arm": arm, "steer_s": round(took, 3), **r})
                log(f"[round {k + 1}] {arm:<20} {r['jobs_per_s']} jobs/s lost {r['lost']} p50 {r['latency_ms']['p50']} ms")
    finally:
        from harness.nemesis.steering import stop_server
        stop_server()
        stack.down()
    medians = {a: statistics.median(r["jobs_per_s"] for r in report["runs"] if r["arm"] == a) for a in ARMS}
    report["median_jobs_per_s"] = medians
    report["ratio_to_not_installed"] = {a: round(v / medians[BASE], 3) for a, v in medians.items()}
    report["paired_ratio_to_not_installed"] = paired_ratios(report["runs"])
    report["lost"] = sum(r["lost"] for r in report["runs"])
    report["left_after_heal"] = left
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for a in ARMS:
        pr = report["paired_ratio_to_not_installed"].get(a, {})
        print(f"{a:<20} median {medians[a]:>8.1f} jobs/s  ratio {report['ratio_to_not_installed'][a]:.3f}  "
              f"paired {pr.get('median')} ({pr.get('min')}-{pr.get('max')})")
    print(f"lost {report['lost']}  left after heal {left}\nwritten {out}")
    return 1 if report["lost"] or left else 0


if __name__ == "__main__":
    sys.exit(main())
