"""The runner's chaos modes (--soak, --replay, --shrink) on the stack the runner started: play, judge, and
write the same reports as a behave run (summary.json with the gate, JUnit, index.html, a bundle for a
failed soak) plus the soak's own history, evidence, verdict and timeline."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

from apiary_suite.soak import SoakSpec, run_soak
from apiary_suite.soak_load import LoadPlan

FEATURE = "Chaos soak"


def spec_from_args(args: Any, seed: int, images: dict) -> SoakSpec:
    """The soak the command line asks for."""
    plan = LoadPlan(rate_rps=args.rate, clients=max(4, min(48, int(args.rate // 3) + 4)))
    return SoakSpec(seed=seed, profile=args.profile or "default", duration_s=args.minutes * 60, plan=plan,
                    bug=args.bug, name="soak", images=images)


def scenarios_of(result: dict, rel_dir: str) -> list[dict]:
    """One report row per gate check of a soak (JUnit test cases, summary scenarios)."""
    rows = []
    for name, check in result["checks"].items():
        rows.append({"feature": FEATURE, "scenario": f"{result['name']} seed {result['seed']}: {name}",
                     "tags": ["soak", "chaos", "p1"], "status": "passed" if check["passed"] else "failed",
                     "duration_s": result["elapsed_s"] if name == "checker" else 0.0, "location": rel_dir,
                     "error": None if check["passed"] else check["detail"], "detail": check["detail"]})
    return rows


def write_junit(run_dir: Path, rows: list[dict]) -> Path:
    """junit/TESTS-soak.xml: one test case per soak check, the failure message carrying its figure."""
    suite = ET.Element("testsuite", name=FEATURE, tests=str(len(rows)),
                       failures=str(sum(r["status"] == "failed" for r in rows)))
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname="soak", name=r["scenario"], time=f"{r['duration_s']:.3f}")
        if r["status"] == "failed":
            ET.SubElement(case, "failure", message=r["error"][:500], type="soak-check").text = r["error"]
        if r.get("bundle"):
            ET.SubElement(case, "system-out").text = f"[[ATTACHMENT|{(run_dir / r['bundle']).resolve()}]]"
    path = run_dir / "junit" / "TESTS-soak.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path


def bundle_failed(run_dir: Path, cluster: Any, soak_dir: Path, result: dict, since: float) -> str:
    """A failure bundle for a failed soak (service logs and state, the verdict); returns its relative path."""
    from apiary_suite.gather import write_bundle
    path = run_dir / "failures" / FEATURE.replace(" ", "_") / f"{result['name']}-seed-{result['seed']}"
    text = "\n".join(f"{n}: {'ok' if c['passed'] else 'FAILED'} - {c['detail']}" for n, c in result["checks"].items())
    anomalies = json.dumps(result["verdict"].get("anomalies", [])[:50], indent=1, default=str)
    write_bundle(path, cluster, since, text + "\n", {"anomalies.json": anomalies},
                 {"soak-dir.txt": str(soak_dir.resolve()) + "\n"})
    return str(path.relative_to(run_dir))


def play(args: Any, cluster: Any, run_dir: Path, seed: int, policy: dict, meta: dict,
         say: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """Run the soak, replay or shrink the arguments ask for; returns (report rows, soak results)."""
    from apiary_suite.soak_replay import find_soak_dirs, shrink_soak, spec_from_run
    since = time.time()
    revision = meta.get("git_revision", "")
    base = spec_from_args(args, seed, meta.get("images", {}))
    if args.shrink:
        src = find_soak_dirs(Path(args.shrink))[0]
        failed = json.loads((src / "soak.json").read_text())
        spec = spec_from_run(src, base)
        found = shrink_soak(cluster, run_dir / "shrink", failed, spec, policy, revision, reset=cluster.reset,
                            max_runs=args.shrink_runs, say=say)
        reproduced = any(c["failed_same_check"] for c in found["candidates"])   # exit 1: the bug is real
        row = {"feature": FEATURE, "scenario": f"shrink of {src.name}: {found['original_faults']} -> "
               f"{found['shrunk_faults']} faults still failing {found['target']}", "tags": ["soak", "chaos"],
               "status": "failed" if reproduced else "passed", "duration_s": found["seconds"], "location": "shrink",
               "error": f"minimal failing schedule: shrink/shrunk-schedule.json ({found['shrunk_faults']} faults)"
               if reproduced else None}
        return [row], []
    spec = spec_from_run(find_soak_dirs(Path(args.replay))[0], base) if args.replay else base
    soak_dir = run_dir / ("replay" if args.replay else "soak")
    result = run_soak(cluster, soak_dir, spec, policy, revision, say=say)
    rows = scenarios_of(result, str(soak_dir.relative_to(run_dir)))
    if not result["passed"]:
        bundle = bundle_failed(run_dir, cluster, soak_dir, result, since)
        for r in rows:
            r["bundle"] = bundle if r["status"] == "failed" else None
        if args.shrink_on_failure:
            cluster.reset()
            spec = spec_from_run(soak_dir, base)
            shrink_soak(cluster, run_dir / "shrink", result, spec, policy, revision, reset=cluster.reset,
                        max_runs=args.shrink_runs, say=say)
    result["dir"] = str(soak_dir.relative_to(run_dir))
    return rows, [result]


def run_mode(args: Any, settings: Any, cluster: Any, run_dir: Path, meta: dict, say: Callable[[str], None]) -> int:
    """--soak / --replay / --shrink: play, then summary.json + gate, JUnit, index.html; returns the exit code."""
    from harness import report
    from harness.gate import apply_gate
    rows, soaks = play(args, cluster, run_dir, settings.seed, args.policy, meta, say)
    write_junit(run_dir, rows)
    summary = report.summarize(rows, {**meta, "mode": "shrink" if args.shrink else "replay" if args.replay else "soak",
                                      "soaks": [{k: v for k, v in s.items() if k != "intervals"} for s in soaks]})
    gate = apply_gate(summary, args.policy)
    summary["gate"] = gate
    code = 0 if gate["passed"] and summary["totals"]["failed"] == 0 else 1
    summary["exit_code"] = code
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    report.write_index(run_dir, summary)
    say("\n" + report.table(summary))
    say(f"Gate: {'HOLDS' if gate['passed'] else 'FAILS'}" + "".join(f"\n  - {r}" for r in gate["reasons"]))
    say(f"Reports: {run_dir}/index.html  (summary.json, junit/, soak/ or replay/ or shrink/)")
    return code
