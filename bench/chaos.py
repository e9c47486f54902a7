"""Chaos-run benchmarks (`python -m bench.chaos <what>`), each driving ./run-integration-tests.sh as a
user would and reading the figures back from the run directories; results go to reports/bench/chaos.json
(one key per benchmark, with the machine, the seeds and the run directories).

  soak --minutes 30 --rate 100 --seed N    a long soak: faults/min, requests/s, lost and duplicated
  replay --runs 10 --seconds 30 --seed N    replay fidelity: a failing dup-final soak (selftest profile)
                                            replayed N times; how many fail the same check (target >= 9/10)
  shrink --seconds 130 --seed N             a failing dup-final soak of >= 30 faults shrunk in the same run:
                                            faults before/after, replays, minutes (target <= 3 in 15 min)
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
    return {"class": "2-core CI-class VM", "nproc": os.cpu_count(), "load_at_start": os.getloadavg(),
            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M")}


class BenchError(RuntimeError):
    """A benchmark run that produced no figures; the message says which run and why."""


def soak_json(run_dir: Path) -> Path:
    """The run's own soak.json (soak/ or replay/; never a shrink candidate's), or BenchError saying why not."""
    run_dir = Path(run_dir)
    for sub in ("soak", "replay"):
        if (run_dir / sub / "soak.json").exists():
            return run_dir / sub / "soak.json"
    found = sorted(p for p in run_dir.glob("**/soak.json") if "shrink" not in p.relative_to(run_dir).parts)
    if found:
        return found[0]
    summary = run_dir / "summary.json"
    why = json.loads(summary.read_text()) if summary.exists() else {}
    raise BenchError(f"{run_dir}: no soak.json - the run ended before its soak was judged (exit "
                     f"{why.get('exit_code', '?')}: {why.get('environment_error') or 'see the runner output'}"
                     f"{': ' + str(why.get('detail'))[:600] if why.get('detail') else ''})")


def figures(run_dir: Path) -> dict:
    """A soak run's figures: from its soak.json and verdict (counts of each anomaly kind)."""
    path = soak_json(run_dir)
    soak = json.loads(path.read_text())
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
            "timeline": str(path.parent / "timeline.png") if (path.parent / "timeline.png").exists() else ""}


def bench_soak(a, work: Path) -> dict:
    code, run_dir, secs = runner(work, "--soak", "--minutes", str(a.minutes), "--rate", str(a.rate),
                                 "--seed", str(a.seed), "--profile", a.profile, timeout_s=a.minutes * 60 + 900)
    return {**figures(run_dir), "exit_code": code, "wall_s": secs}


def judged(report_dir: Path, *args: str, timeout_s: float, tries: int = 3) -> tuple[int, Path, float, dict, list]:
    """A runner run that gets as far as a judged soak: one that ends before (exit 2: the stack did not come
    up, e.g. on a machine shared with other work) is retried, up to `tries` runs, and listed, never counted
    as a verdict. Returns (exit code, run dir, seconds, figures, the runs that did not get there)."""
    lost = []
    for attempt in range(tries):
        code, run_dir, secs = runner(report_dir / f"try-{attempt}", *args, timeout_s=timeout_s)
        try:
            return code, run_dir, secs, figures(run_dir), lost
        except BenchError as exc:
            lost.append({"exit_code": code, "run_dir": str(run_dir), "why": str(exc)[:600]})
            print(f"[bench.chaos] no judged soak ({exc}); {tries - attempt - 1} tries left", flush=True)
    raise BenchError(f"{tries} runs in a row ended before their soak was judged: {lost}")


def bench_replay(a, work: Path) -> dict:
    """A failing dup-final soak, then --replay of it a.runs times: how many fail the same check."""
    code, first, secs, original, lost = judged(work / "original", "--soak", "--minutes", str(a.seconds / 60),
                                               "--profile", "selftest", "--seed", str(a.seed), "--bug", "dup-final",
                                               timeout_s=900)
    original.update(exit_code=code, wall_s=secs)
    if code != 1 or original["anomalies"].get("duplicate-execution", 0) == 0:
        raise BenchError(f"the original soak exited {code} with anomalies {original['anomalies']}: not the "
                         f"dup-final failure to replay ({first})")
    same = []
    for i in range(a.runs):
        rc, run_dir, secs, f, gone = judged(work / f"replay-{i:02d}", "--replay", str(first), timeout_s=900)
        lost += gone
        same.append({"exit_code": rc, "failed_same_check": not f["checks"]["checker"] and
                     f["anomalies"].get("duplicate-execution", 0) > 0, "anomalies": f["anomalies"],
                     "faults_applied": f["faults_applied"], "wall_s": secs, "run_dir": str(run_dir)})
        print(f"[bench.chaos replay] {i + 1}/{a.runs}: exit {rc}, same check failed: {same[-1]['failed_same_check']}",
              flush=True)
    hits = sum(r["failed_same_check"] for r in same)
    walls = sorted(r["wall_s"] for r in same)
    return {"command": f"python -m bench.chaos replay --runs {a.runs} --seconds {a.seconds:g} --seed {a.seed}",
            "check": "checker: duplicate-execution", "original": original, "runs": a.runs,
            "failed_same_check": hits, "fidelity": round(hits / max(a.runs, 1), 2), "target": ">= 9 of 10",
            "target_met": hits >= 0.9 * a.runs, "replay_wall_s_median": walls[len(walls) // 2] if walls else None,
            "replays": same, "runs_that_never_judged": lost}


def bench_shrink(a, work: Path) -> dict:
    """A failing dup-final soak of >= 30 faults, shrunk in the same run (--shrink-on-failure)."""
    code, run_dir, secs, soak, lost = judged(work, "--soak", "--minutes", str(a.seconds / 60), "--profile", "selftest",
                                             "--seed", str(a.seed), "--bug", "dup-final", "--shrink-on-failure",
                                             "--shrink-runs", str(a.max_runs), timeout_s=3600)
    path = run_dir / "shrink" / "shrink.json"
    if not path.exists():
        raise BenchError(f"{run_dir}: the soak exited {code} with checks {soak['checks']} and no shrink/shrink.json "
                         "(a soak that passed is not shrunk)")
    shrink = json.loads(path.read_text())
    return {"command": f"python -m bench.chaos shrink --seconds {a.seconds:g} --seed {a.seed} --max-runs {a.max_runs}",
            "soak": soak, "exit_code": code, "wall_s": secs,
            **{k: shrink.get(k) for k in ("original_faults", "shrunk_faults", "runs", "minimal", "seconds")},
            "check": shrink.get("target"), "shrink_minutes": round(shrink["seconds"] / 60, 1), "target": "faults >= 30 -> <= 3 within 15 min",
            "target_met": shrink["original_faults"] >= 30 and shrink["shrunk_faults"] <= 3 and shrink["seconds"] <= 900,
            "schedule": shrink.get("schedule"), "candidates": shrink.get("candidates"), "runs_that_never_judged": lost}


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
    k.add_argument("--seconds", type=float, default=130)   # selftest, seed 7: 30 faults (tests/nemesis_gen)
    k.add_argument("--seed", type=int, default=7)
    k.add_argument("--max-runs", type=int, default=40)
    f = sub.add_parser("figures")
    f.add_argument("run_dir", type=Path)
    a = p.parse_args()
    work = ROOT / "reports" / "bench" / f"chaos-{a.what}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = machine()
    try:
        result = figures(a.run_dir) if a.what == "figures" else \
            {"soak": bench_soak, "replay": bench_replay, "shrink": bench_shrink}[a.what](a, work)
    except BenchError as exc:
        raise SystemExit(f"bench.chaos {a.what}: no figures: {exc}") from None
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[a.what] = {"machine": {**start, "load_at_end": os.getloadavg()}, **result}
    OUT.write_text(json.dumps(data, indent=1, default=str))
    print(json.dumps(data[a.what], indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
