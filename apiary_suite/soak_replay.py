"""Replay and shrink of a soak: a schedule read back from a run (or a schedule.json) played again with the
same load seed, and delta debugging over a failing soak's faults and durations, each candidate replayed on
a reset stack, until a minimal schedule that still fails the same check is found and written out."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from apiary_suite.soak import SoakSpec, run_soak


def find_soak_dirs(path: Path) -> list[Path]:
    """Soak directories under a run dir (each holds schedule.json and soak.json), the path itself, or for a
    schedule file the file (spec_from_run reads either)."""
    path = Path(path)
    if path.is_file() or (path / "schedule.json").exists():
        return [path]
    found = sorted(p.parent for p in path.glob("**/schedule.json"))
    if not found:
        raise FileNotFoundError(f"{path}: no schedule.json in it or below it (not a soak run directory)")
    return found


def spec_from_run(path: Path, base: SoakSpec) -> SoakSpec:
    """The spec that replays a soak: its schedule, seed (the load's too), profile, length and bug knob."""
    from harness.nemesis.generator import read_schedule
    schedule, meta = read_schedule(path)
    soak = Path(path) / "soak.json" if Path(path).is_dir() else Path(path).parent / "soak.json"
    bug = json.loads(soak.read_text()).get("bug") if soak.exists() else None
    return replace(base, seed=int(meta.get("seed", base.seed)), profile=meta.get("profile", base.profile),
                   duration_s=float(meta.get("duration_s", base.duration_s)), schedule=schedule,
                   bug=base.bug or bug, name="replay")


def signature(result: dict) -> set[str]:
    """What a soak failed on: its failed checks, and for the checker each anomaly kind it found."""
    sig = {name for name, c in result["checks"].items() if not c["passed"]}
    if "checker" in sig:
        sig |= {f"anomaly:{a['kind']}" for a in result["verdict"].get("anomalies", [])}
    return sig


def compress(schedule: list[dict], lead_s: float = 2.0, max_gap_s: float = 3.0) -> list[dict]:
    """The same faults, durations and order, with the time before the first fault and the quiet gaps
    between faults capped, so a candidate replays in seconds rather than the soak's full length."""
    out, shift, prev_end = [], None, None
    for item in sorted(schedule, key=lambda i: i["start_s"]):
        start = item["start_s"]
        if shift is None:
            shift = start - lead_s
        elif prev_end is not None and start - shift > prev_end + max_gap_s:
            shift = start - (prev_end + max_gap_s)
        new = dict(item, start_s=round(start - shift, 3))
        prev_end = max(prev_end or 0.0, new["start_s"] + new["duration_s"])
        out.append(new)
    return out


def replay_length(schedule: list[dict], quiet_s: float) -> float:
    """Seconds a compressed replay needs: until its last fault ends, plus the quiet period."""
    return max((i["start_s"] + i["duration_s"] for i in schedule), default=0.0) + quiet_s


def shrink_soak(stack: Any, out_dir: Path, failed: dict, spec: SoakSpec, policy: dict, revision: str,
                reset: Callable[[], Any], max_runs: int = 24, deadline_s: float = 900.0, quiet_s: float = 4.0,
                say: Callable[[str], None] = print) -> dict:
    """Delta-debug a failed soak's schedule; writes shrunk-schedule.json and shrink.json into out_dir."""
    from harness.nemesis.generator import schedule_json
    from harness.nemesis.shrink import shrink
    target = signature(failed)
    if not target:
        raise ValueError("the soak passed: there is nothing to shrink")
    wanted = {s for s in target if s.startswith("anomaly:")} or target
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []

    def still_fails(candidate: list[dict]) -> bool:
        reset()
        sched = compress(candidate)
        n = len(runs)
        sub = replace(spec, schedule=sched, duration_s=replay_length(sched, quiet_s), name=f"shrink-{n:02d}")
        res = run_soak(stack, out_dir / f"candidate-{n:02d}", sub, policy, revision, say=say)
        hit = bool(wanted & signature(res))
        runs.append({"faults": len(candidate), "failed_same_check": hit, "signature": sorted(signature(res))})
        return hit

    start = time.monotonic()
    found = shrink(spec.schedule or [], still_fails, max_runs=max_runs, deadline_s=deadline_s,
                   log=lambda m: say(f"[shrink] {m}"))
    minimal = compress(found["schedule"])
    (out_dir / "shrunk-schedule.json").write_text(schedule_json(minimal, {
        "seed": spec.seed, "profile": spec.profile, "duration_s": replay_length(minimal, quiet_s),
        "git_revision": revision, "shrunk_from": len(spec.schedule or []), "fails": sorted(wanted)}))
    summary = {"original_faults": len(spec.schedule or []), "shrunk_faults": len(minimal), "runs": found["runs"],
               "minimal": found["minimal"], "seconds": round(time.monotonic() - start, 1), "target": sorted(wanted),
               "candidates": runs, "schedule": minimal}
    (out_dir / "shrink.json").write_text(json.dumps(summary, indent=1))
    say(f"[shrink] {summary['original_faults']} -> {summary['shrunk_faults']} faults in {summary['runs']} runs "
        f"({summary['seconds']}s), still failing {sorted(wanted)} -> {out_dir / 'shrunk-schedule.json'}")
    return summary
