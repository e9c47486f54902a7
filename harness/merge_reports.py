"""merge-reports: run directories (the shards of one `--shards N` run, the `--shard i/N` jobs of a CI
matrix, or plain runs) combined into one report: the union of their scenarios, one JUnit file, summary.json,
index.html, and the gate over the union, plus what only the shards' plans can show (a shard missing, shards
from different selections, a shard's environment failure, a scenario run twice or never)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness import gate as release_gate, report
from harness.options import EXIT_ENV, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, Parser
from harness.selection import ROOT, UsageError, caller_path
from harness.shard_plan import scenario_key

SHOWN = 3       # scenarios named in one gate reason before "..."


@dataclass
class Run:
    """One run directory and its summary.json."""

    dir: Path
    summary: dict

    @property
    def shard(self) -> dict | None:
        """The summary's shard block (harness.shard_plan.shard_meta), None for a plain run."""
        return self.summary.get("shard") if isinstance(self.summary.get("shard"), dict) else None

    @property
    def label(self) -> str:
        """How reasons name the run: 'shard 2/4', or 'run <dir name>'."""
        return f"shard {self.shard.get('index')}/{self.shard.get('count')}" if self.shard else f"run {self.dir.name}"

    @property
    def engine(self) -> str:
        """The engine the run used: the shard's, else the summary's engine, DOCKER_HOST or backend."""
        s = self.summary
        return str((self.shard or {}).get("engine") or s.get("engine") or s.get("docker_host") or s.get("backend")
                   or "an unknown engine")

    @property
    def env_failed(self) -> bool:
        """Whether the run ended in an environment error (exit 2, no scenarios)."""
        return bool(self.summary.get("environment_error")) or (self.summary.get("exit_code") == EXIT_ENV
                                                               and not self.summary.get("scenarios"))


def read_run(run_dir: Path) -> Run:
    """A run directory's summary.json; UsageError names the directory or the file that cannot be used."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise UsageError(f"{run_dir}: no summary.json (not a run directory, or its run stopped before writing one)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: cannot be read as JSON: {exc}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("scenarios", []), list):
        raise UsageError(f"{path}: not a run summary (an object with a 'scenarios' list)")
    check_shard(summary.get("shard"), path)
    return Run(run_dir.resolve(), summary)


def check_shard(meta: object, path: Path) -> None:
    """A summary's "shard" block must be harness.shard_plan.shard_meta's shape; UsageError names the field."""
    if meta is None:
        return
    fields = {"index": int, "count": int, "fingerprint": str, "planned": list}
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: 'shard' must be an object (index, count, fingerprint, planned, engine)")
    for field, kind in fields.items():
        if not isinstance(meta.get(field), kind) or isinstance(meta.get(field), bool):
            raise UsageError(f"{path}: shard.{field} must be {kind.__name__}, not {meta.get(field)!r}")


def shown(keys: list[str]) -> str:
    """A few scenario keys quoted, then '...' when there are more."""
    return ", ".join(repr(k) for k in keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")


def rebase(record: dict, run: Run, out_dir: Path, field: str) -> dict:
    """A copy of a record whose `field` (a path relative to the run dir) is made relative to out_dir."""
    out = dict(record)
    if out.get(field):
        out[field] = os.path.relpath(run.dir / out[field], out_dir)
    if run.shard:
        out["shard"] = run.shard.get("index")
    return out


def not_run(planned: dict, run: Run, why: str) -> dict:
    """A planned scenario that has no result, reported as an error that says why."""
    return {"feature": planned.get("feature"), "scenario": planned.get("scenario"), "location": planned.get("location"),
            "tags": sorted(t.lstrip("@") for t in planned.get("tags") or []), "status": "error", "duration_s": 0,
            "error": why, "shard": (run.shard or {}).get("index")}


def plan_reasons(runs: list[Run]) -> list[str]:
    """Shards that do not fit one plan: mixed with plain runs, other fingerprints or counts, an index given
    twice or out of range, a missing index, other git revisions."""
    sharded = [r for r in runs if r.shard]
    if not sharded:
        return []
    reasons = []
    plain = [r for r in runs if not r.shard]
    if plain:
        reasons.append(f"{len(plain)} run dir(s) carry no shard metadata while {len(sharded)} do "
                       f"({', '.join(str(r.dir) for r in plain)}): they cannot be checked against the plan")
    for field, what in (("fingerprint", "the selection fingerprint (they were not planned from one selection)"),
                        ("count", "the shard count")):
        seen: dict[object, list[str]] = {}
        for r in sharded:
            seen.setdefault(r.shard.get(field), []).append(r.label)
        if len(seen) > 1:
            reasons.append(f"shards disagree on {what}: " + "; ".join(f"{v} ({', '.join(ls)})" for v, ls in seen.items()))
    revisions = {r.summary.get("git_revision") for r in sharded}
    if len(revisions) > 1:
        reasons.append(f"shards ran different git revisions: {', '.join(sorted(map(str, revisions)))}")
    count = Counter(r.shard.get("count") for r in sharded).most_common(1)[0][0]
    by_index: dict[object, list[Run]] = {}
    for r in sharded:
        by_index.setdefault(r.shard.get("index"), []).append(r)
    for index, group in by_index.items():
        if len(group) > 1:
            reasons.append(f"shard {index}/{count} was given {len(group)} times: {', '.join(str(r.dir) for r in group)}")
        if not 1 <= index <= count:
            reasons.append(f"shard index {index!r} is outside 1..{count} ({group[0].dir})")
    missing = [i for i in range(1, count + 1) if i not in by_index]
    sizes = {r.shard.get("selection_size") for r in sharded}
    present = sum(len(by_index[i][0].shard.get("planned") or []) for i in range(1, count + 1) if i in by_index)
    lost = (next(iter(sizes)) - present) if len(sizes) == 1 and isinstance(next(iter(sizes)), int) else None
    for i in missing:
        if lost is not None and len(missing) == 1:
            reasons.append(f"shard {i}/{count} missing: its {lost} planned scenarios did not run")
        elif lost is not None:
            reasons.append(f"shard {i}/{count} missing: its planned scenarios did not run ({lost} planned for the "
                           f"{len(missing)} missing shards together)")
        else:
            reasons.append(f"shard {i}/{count} missing: its planned scenarios did not run")
    return reasons


def results_of(run: Run, out_dir: Path) -> tuple[list[dict], list[str]]:
    """A run's scenario records (bundles rebased onto out_dir; a shard's planned scenarios without a result
    as errors) and the gate reasons the run itself adds."""
    s, reasons = run.summary, []
    records = [rebase(x, run, out_dir, "bundle") for x in s.get("scenarios") or [] if isinstance(x, dict)]
    have = {scenario_key(x.get("feature"), x.get("scenario")) for x in records}
    planned = [p for p in (run.shard or {}).get("planned") or [] if isinstance(p, dict)]
    absent = [p for p in planned if scenario_key(p.get("feature"), p.get("scenario")) not in have]
    names = [scenario_key(p.get("feature"), p.get("scenario")) for p in absent]
    if run.env_failed:
        what = s.get("environment_error") or f"exit code {s.get('exit_code')}"
        detail = str(s.get("detail") or "").strip()
        why = f"not run: {run.label} on engine {run.engine} ended in an environment error: {what}" + (
            f": {detail}" if detail else "")
        records += [not_run(p, run, why) for p in absent]
        if run.shard:
            reasons.append(f"{run.label} on engine {run.engine} ended in an environment error ({what}): its "
                           f"{len(absent)} planned scenario(s) without a result are reported as errors")
        else:
            reasons.append(f"{run.label} ({run.dir}) ended in an environment error ({what})"
                           + (f": {detail.splitlines()[0]}" if detail else ""))
        return records, reasons
    if absent:
        why = f"not run: planned for {run.label} (engine {run.engine}), but its summary.json has no result for it"
        records += [not_run(p, run, why) for p in absent]
        reasons.append(f"{run.label}: {len(absent)} planned scenario(s) have no result in its summary.json "
                       f"({run.dir}): {shown(names)}")
    code = s.get("exit_code")
    if code not in (EXIT_PASS, None) and not any(x.get("status") in report.FAILED for x in records):
        told = "; ".join((s.get("gate") or {}).get("reasons") or []) or "no reason recorded"
        reasons.append(f"{run.label} exited {code} with no failed scenario: {told}")
    return records, reasons


def severity(record: dict) -> int:
    """Which of two results of one scenario the union keeps: a failure over a pass over a skip."""
    status = record.get("status")
    return 2 if status in report.FAILED else 1 if status == "passed" else 0


def union(per_run: list[tuple[Run, list[dict]]], sharded: bool) -> tuple[list[dict], list[str]]:
    """One record per scenario (the worst result when it appears more than once) and, for shards, the
    duplicate reason; plain runs' repeats are not a reason (merging two runs of one suite is legitimate)."""
    kept: dict[str, dict] = {}
    where: dict[str, list[str]] = {}
    for run, records in per_run:
        for x in records:
            key = scenario_key(x.get("feature"), x.get("scenario"))
            where.setdefault(key, []).append(run.label)
            if key not in kept or severity(x) > severity(kept[key]):
                kept[key] = x
    twice = [k for k, labels in where.items() if len(labels) > 1]
    reasons = []
    if twice and sharded:
        reasons.append(f"{len(twice)} scenario(s) ran in more than one shard: "
                       + "; ".join(f"{k!r} ({', '.join(where[k])})" for k in twice[:SHOWN]) + (" ..." if len(twice) > SHOWN else ""))
    return list(kept.values()), reasons


def common(runs: list[Run], field: str):
    """The runs' shared value of a summary field, else their distinct values joined ('mixed: ...')."""
    values = [r.summary.get(field) for r in runs if r.summary.get(field) is not None]
    distinct = list(dict.fromkeys(map(str, values)))
    return values[0] if len(distinct) == 1 else (f"mixed: {', '.join(distinct)}" if distinct else None)


def write_junit(per_run: list[tuple[Run, list[dict]]], out_dir: Path) -> Path:
    """Every run's junit/*.xml copied into out_dir/junit/ (prefixed by shard, so equal names do not clash),
    the scenarios that did not run as error testcases, and all of it in one out_dir/junit.xml."""
    junit = out_dir / "junit"
    junit.mkdir(parents=True, exist_ok=True)
    for old in junit.glob("*.xml"):
        old.unlink()      # a previous merge into the same directory
    for pos, (run, records) in enumerate(per_run, 1):
        prefix = f"{pos:02d}-" + (f"shard-{run.shard.get('index')}-of-{run.shard.get('count')}" if run.shard
                                  else f"run-{run.dir.name}")
        for path in sorted((run.dir / "junit").glob("*.xml")):
            shutil.copyfile(path, junit / f"{prefix}--{path.name}")
    missing = [x for _, records in per_run for x in records if str(x.get("error", "")).startswith("not run: ")]
    if missing:
        suite = ET.Element("testsuite", name="merge-reports.not-run", tests=str(len(missing)), errors=str(len(missing)),
                           failures="0", skipped="0", time="0")
        for x in missing:
            stem = Path(str(x.get("location") or "unknown").split(":")[0]).stem
            case = ET.SubElement(suite, "testcase", classname=f"{stem}.{x.get('feature')}", name=str(x.get("scenario")))
            ET.SubElement(case, "error", message=x["error"], type="not_run").text = x["error"]
        ET.ElementTree(suite).write(junit / "zz-merge-not-run.xml", encoding="utf-8", xml_declaration=True)
    return report.merge_junit(junit, out_dir / "junit.xml")


def merge_runs(run_dirs: list[Path], out_dir: Path, policy: dict, meta: dict | None = None) -> dict:
    """Merge the run directories into out_dir (summary.json, junit/, junit.xml, index.html) and return the
    merged summary with its gate and exit_code (0 pass, 1 fail, 2 when every run failed its environment).
    `meta` (a --shards parent's run id, seed, images, ...) overrides what is taken from the runs."""
    if not run_dirs:
        raise UsageError("merge-reports needs at least one run directory")
    out_dir = Path(out_dir).resolve()
    runs = [read_run(Path(d)) for d in run_dirs]
    for r in runs:
        if r.dir == out_dir:
            raise UsageError(f"--out {out_dir} is one of the run directories: merge into another directory")
    runs.sort(key=lambda r: (0, r.shard["index"], str(r.dir)) if r.shard else (1, 0, str(r.dir)))
    out_dir.mkdir(parents=True, exist_ok=True)
    sharded = any(r.shard for r in runs)
    reasons = plan_reasons(runs)
    per_run = []
    for r in runs:
        records, own = results_of(r, out_dir)
        per_run.append((r, records))
        reasons += own
    scenarios, dupes = union(per_run, sharded)
    reasons += dupes
    given = {k: v for k, v in (meta or {}).items() if k not in ("shard", "scenarios", "gate", "exit_code")}
    meta = {"run_id": out_dir.name, "mode": "merged",
            **{f: common(runs, f) for f in ("seed", "git_revision", "backend", "tags", "timeout_multiplier")},
            "started_at": min((str(r.summary["started_at"]) for r in runs if r.summary.get("started_at")), default=None),
            **given, "merged_from": [str(r.dir) for r in runs]}
    summary = report.summarize(scenarios, meta)
    summary["soaks"] = [rebase(k, r, out_dir, "dir") for r in runs for k in r.summary.get("soaks") or [] if isinstance(k, dict)]
    gate = release_gate.apply_gate(summary, policy)
    gate["reasons"] += reasons
    gate["passed"] = not gate["reasons"]
    summary["gate"] = gate
    summary["shards"] = [{"index": (r.shard or {}).get("index"), "engine": r.engine, "run_dir": str(r.dir),
                          "exit_code": r.summary.get("exit_code"), "elapsed_s": r.summary.get("elapsed_s"),
                          "totals": r.summary.get("totals")} for r in runs]
    if all(r.env_failed for r in runs):
        summary["environment_error"] = "every merged run ended in an environment error"
        summary["detail"] = "\n".join(f"{r.label} on engine {r.engine} ({r.dir}): {r.summary.get('environment_error')}: "
                                      f"{r.summary.get('detail') or ''}".rstrip(": ") for r in runs)
        code = EXIT_ENV
    else:
        code = EXIT_PASS if gate["passed"] and summary["totals"]["failed"] == 0 else EXIT_FAIL
    summary["exit_code"] = code
    write_junit(per_run, out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    report.write_index(out_dir, summary)
    return summary


def build_parser() -> Parser:
    """merge-reports' command line (usage errors exit 4, as the runner's)."""
    p = Parser(prog="merge-reports", description="Combine run directories (the shards of one run or of a CI matrix) "
               "into one report and apply the gate over the union. Exit 0 pass, 1 fail, 2 every run failed its "
               "environment (or gate.yml cannot be used), 4 usage error.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, each holding a summary.json")
    p.add_argument("--out", metavar="DIR", help="where the merged report goes (default: 'merged' beside the first RUN_DIR)")
    p.add_argument("--gate", default=str(ROOT / "gate.yml"), metavar="FILE", help="gate policy (default: gate.yml)")
    p.add_argument("--junit-xml", metavar="PATH", help="also copy the merged JUnit file to PATH")
    return p


def main(argv: list[str] | None = None) -> int:
    """merge-reports RUN_DIR... [--out DIR] [--gate FILE] [--junit-xml PATH]; returns the exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    dirs = [caller_path(d) for d in args.run_dirs]
    out = caller_path(args.out) if args.out else dirs[0].resolve().parent / "merged"
    try:
        policy = release_gate.load_gate(caller_path(args.gate))
    except release_gate.GateError as exc:
        print(f"merge-reports: the gate policy cannot be used: {exc}\nExit code {EXIT_ENV}", file=sys.stderr)
        return EXIT_ENV
    try:
        summary = merge_runs(dirs, out, policy)
    except UsageError as exc:
        print(f"merge-reports: usage error: {exc}\nExit code {EXIT_USAGE}", file=sys.stderr)
        return EXIT_USAGE
    if args.junit_xml:
        target = caller_path(args.junit_xml)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "junit.xml", target)
        print(f"JUnit: {target}")
    gate = summary["gate"]
    if summary.get("environment_error"):
        print(f"ERROR: {summary['environment_error']}:\n{summary['detail']}")
    print("\n" + report.table(summary))
    print(f"Gate: {'HOLDS' if gate['passed'] else 'FAILS'}" + "".join(f"\n  - {r}" for r in gate["reasons"]))
    print(f"Reports: {out}/index.html  (summary.json, junit.xml, junit/)")
    print(f"Exit code {summary['exit_code']}", flush=True)
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
