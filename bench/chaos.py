"""Chaos-run benchmarks (`python -m bench.chaos <what>`), each driving ./run-integration-tests.sh as a
user would and reading the figures back from the run directories; results go to reports/bench/chaos.json
(one key per benchmark, with the machine, the seeds and the run directories).

  soak --minutes 30 --rate 100 --seed N    a long soak: faults/min, requests/s, lost and duplicated
  replay --runs 10 --seed N                 replay fidelity: a failing dup-final soak replayed N times
  shrink --seconds 90 --seed N              a failing schedule of >= 30 faults shrunk (minutes, size)
  figures RUN_DIR                           the figures of an existing soak run
Not part of the test command: these take from minutes to half an hour."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "bench" / "chaos.json"


def runner(report_dir: Path, *args: str, timeout_s: float) -> tuple[int, Path, float]:
    """Run the runner (no rebuild); returns (exit code, its run dir, seconds)."""
    start = time.monotonic()
    proc = subprocess.run([str(ROOT / "run-integration-tests.sh"), "--no-build", "--report-dir", str(report_dir), *args],
                          cwd=ROOT, timeout=timeout_s)
    return proc.returncode, (report_dir / "latest").resolve(), round(time.monotonic() - start, 1)


def machine() -> dict:
    return {"nproc": os.cpu_count(), "load_at_start": os.getloadavg(), "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%d %H:%M")}


def figures(run_dir: Path) -> dict:
    """A soak run's figures: from its soak.json and verdict (counts of each anomaly kind)."""
    soak = json.loads(next(Path(run_dir).glob("**/soak.json")).read_text())
    kinds: dict[str, int] = {}
    for a in soak["verdict"].get("anomalies", []):
        kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    return {"run_dir": str(run_dir), "seed": soak["seed"], "profile": soak["profile"],
            "minutes": round(soak["duration_s"] / 60, 2), "requests": soak["requests"], "tries": soak["tries"],
            "tries_per_s": soak["rps"], "ok_requests": soak["ok_requests"],
            "faults_scheduled": soak["faults"], "faults_applied": soak["faults_applied"],
            "faults_per_min": soak["faults_per_min"], "faults_unverified": soak["faults_unverified"],
            "availability_during_faults": soak["availability_during_faults"], "recovery_s": soak["recovery_s"],
            "latency_ms": soak["latency_ms"], "verdict": soak["verdict"]["valid"],
            "lost": kinds.get("lost", 0), "duplicated": kinds.get("duplicate-delivery", 0) + kinds.get("duplicate-execution", 0),
            "anomalies": kinds, "checks": {k: v["passed"] for k, v in soak["checks"].items()},
            "timeline": str(next(Path(run_dir).glob("**/timeline.png"), ""))}


def bench_soak(a, work: Path) -> dict:
    code, run_dir, secs = runner(work, "--soak", "--minutes", str(a.minutes), "--rate", str(a.rate),
                                 "--seed", str(a.seed), "--profile", a.profile, timeout_s=a.minutes * 60 + 900)
    return {**figures(run_dir), "exit_code": code, "wall_s": secs}


def bench_replay(a, work: Path) -> dict:
    code, first, _ = runner(work / "original", "--soak", "--minutes", str(a.seconds / 60), "--profile", "selftest",
                            "--seed", str(a.seed), "--bug", "dup-final", timeout_s=900)
    original = figures(first)
    if code != 1:
        return {"error": f"the original soak exited {code}, not 1: nothing to replay", "original": original}
    same = []
    for i in range(a.runs):
        rc, run_dir, secs = runner(work / f"replay-{i}", "--replay", str(first), timeout_s=900)
        f = figures(run_dir)
        same.append({"exit_code": rc, "failed_same_check": f["anomalies"].get("duplicate-execution", 0) > 0,
                     "seconds": secs, "run_dir": str(run_dir)})
    return {"original": original, "replays": same, "runs": a.runs,
            "failed_same_check": sum(r["failed_same_check"] for r in same)}


def bench_shrink(a, work: Path) -> dict:
    code, run_dir, secs = runner(work, "--soak", "--minutes", str(a.seconds / 60), "--profile", "selftest",
                                 "--seed", str(a.seed), "--bug", "dup-final", "--shrink-on-failure",
                                 "--shrink-runs", str(a.max_runs), timeout_s=3600)
    shrink = json.loads((run_dir / "shrink" / "shrink.json").read_text()) if (run_dir / "shrink").exists() else {}
    return {"soak": figures(run_dir), "exit_code": code, "wall_s": secs,
            **{k: shrink.get(k) for k in ("original_faults", "shrunk_faults", "runs", "minimal", "seconds", "target")},
            "schedule": shrink.get("schedule")}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--minutes", type=float, default=30)
    s.add_argument("--rate", type=float, default=100)
    s.add_argument("--seed", type=int, default=20261201)
    s.add_argument("--profile", default="default")
    r = sub.add_parser("replay")
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--seconds", type=float, default=30)
    r.add_argument("--seed", type=int, default=7)
    k = sub.add_parser("shrink")
    k.add_argument("--seconds", type=float, default=100)
    k.add_argument("--seed", type=int, default=7)
    k.add_argument("--max-runs", type=int, default=40)
    f = sub.add_parser("figures")
    f.add_argument("run_dir", type=Path)
    a = p.parse_args()
    work = ROOT / "reports" / "bench" / f"chaos-{a.what}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = machine()
    result = figures(a.run_dir) if a.what == "figures" else \
        {"soak": bench_soak, "replay": bench_replay, "shrink": bench_shrink}[a.what](a, work)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[a.what] = {"machine": start, **result}
    OUT.write_text(json.dumps(data, indent=1, default=str))
    print(json.dumps(data[a.what], indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
