"""Run results: summary.json from behave's JSON (+ failures/skips the hooks recorded; the gate verdict
is harness/gate.py's), JUnit links to failure bundles, an index.html, and the printed summary table."""
from __future__ import annotations

import html
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

FAILED = {"failed", "error", "hook_error", "undefined", "cleanup_error", "traceback"}
PRIORITIES = ("p0", "p1", "p2")


def read_jsonl(path: Path) -> list[dict]:
    """JSON lines of a file ([] when it does not exist)."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def scenarios_from_behave(behave_json: Path) -> list[dict]:
    """One record per executed scenario: feature, name, tags (feature's included), status, duration."""
    if not Path(behave_json).exists() or not Path(behave_json).read_text().strip():
        return []
    out = []
    for feature in json.loads(Path(behave_json).read_text()):
        ftags = [t.lstrip("@") for t in feature.get("tags", [])]
        for el in feature.get("elements", []):
            if el.get("type") not in ("scenario", "scenario_outline"):
                continue
            steps = el.get("steps", [])
            duration = sum((s.get("result") or {}).get("duration", 0) or 0 for s in steps)
            out.append({"feature": feature.get("name"), "scenario": el.get("name"), "location": el.get("location"),
                        "tags": sorted(set(ftags) | {t.lstrip("@") for t in el.get("tags", [])}),
                        "status": el.get("status", "untested"), "duration_s": round(duration, 3)})
    return out


def merge(scenarios: list[dict], failures: list[dict], skips: list[dict], elapsed: list[dict] = ()) -> list[dict]:
    """Attach bundles (a traceback failure turns a passed scenario red), skip reasons, wall times."""
    by_key = {(s["feature"], s["scenario"]): s for s in scenarios}
    for e in elapsed:
        if (e["feature"], e["scenario"]) in by_key:
            by_key[(e["feature"], e["scenario"])]["elapsed_s"] = e["elapsed_s"]
    for f in failures:
        s = by_key.get((f["feature"], f["scenario"]))
        if s is None:
            s = {"feature": f["feature"], "scenario": f["scenario"], "tags": [t.lstrip("@") for t in f.get("tags", [])],
                 "status": f.get("status", "failed"), "duration_s": 0, "location": f.get("location")}
            scenarios.append(s)
            by_key[(s["feature"], s["scenario"])] = s
        s.update(bundle=f.get("bundle"), failed_step=f.get("step"), error=f.get("error"))
        if s["status"] not in FAILED:
            s["status"] = f.get("status", "failed")
    for k in skips:
        s = by_key.get((k["feature"], k["scenario"]))
        if s is not None:
            s.update(status="skipped", skip_reason=k.get("reason"))
    return scenarios


def count(scenarios: list[dict]) -> dict[str, int]:
    c = {"total": len(scenarios), "passed": 0, "failed": 0, "skipped": 0}
    for s in scenarios:
        key = "failed" if s["status"] in FAILED else ("passed" if s["status"] == "passed" else "skipped")
        c[key] += 1
    return c


def summarize(scenarios: list[dict], meta: dict[str, Any]) -> dict:
    """summary.json content: totals, counts by tag and by priority, failures, skips, run metadata."""
    tags = sorted({t for s in scenarios for t in s["tags"]})
    return {**meta, "totals": count(scenarios),
            "duration_s": round(sum(s["duration_s"] for s in scenarios), 3),
            "elapsed_s": round(sum(s.get("elapsed_s", s["duration_s"]) for s in scenarios), 3),
            "by_tag": {t: count([s for s in scenarios if t in s["tags"]]) for t in tags},
            "by_priority": {p: count([s for s in scenarios if p in s["tags"]]) for p in PRIORITIES},
            "failures": [{k: s.get(k) for k in ("feature", "scenario", "status", "bundle", "failed_step", "error", "tags")}
                         for s in scenarios if s["status"] in FAILED],
            "skipped": [{"feature": s["feature"], "scenario": s["scenario"], "tags": s["tags"],
                         "reason": s.get("skip_reason", "skipped by behave")} for s in scenarios if s["status"] == "skipped"],
            "scenarios": scenarios}


def junit_key(feature: str, scenario: str) -> tuple[str, str]:
    """The identity a failure and a JUnit testcase share: feature name and full scenario name (an outline
    row keeps its `-- @1.3 ...` suffix), whitespace-trimmed."""
    return (feature or "").strip(), (scenario or "").strip()


def testcase_failure(case: ET.Element, suite: ET.Element, by_key: dict) -> dict | None:
    """The failure of a testcase: behave names it classname=`<file>.<feature>` (the suite `<file>.<feature>`
    too), name=`<scenario>`; the feature is the longest recorded feature name the classname ends with."""
    name = (case.get("name") or "").strip()
    owner = case.get("classname") or suite.get("name") or ""
    matches = [f for (feature, scenario), f in by_key.items()
               if scenario == name and (owner == feature or owner.endswith("." + feature))]
    return max(matches, key=lambda f: len(f.get("feature") or ""), default=None)


def link_junit(junit_dir: Path, failures: list[dict], run_dir: Path) -> int:
    """Add a `bundle` property and an [[ATTACHMENT|...]] system-out line to failed testcases; returns count."""
    linked = 0
    by_key = {junit_key(f.get("feature"), f["scenario"]): f for f in failures if f.get("bundle")}
    for path in sorted(Path(junit_dir).glob("*.xml")):
        tree = ET.parse(path)
        changed = False
        root = tree.getroot()
        for suite in ([root] if root.tag == "testsuite" else list(root.iter("testsuite"))):
            for case in suite.iter("testcase"):
                f = testcase_failure(case, suite, by_key)
                if f is None:
                    continue
                bundle = (Path(run_dir) / f["bundle"]).resolve()
                props = case.find("properties") if case.find("properties") is not None else ET.SubElement(case, "properties")
                ET.SubElement(props, "property", name="bundle", value=str(bundle))
                out = case.find("system-out") if case.find("system-out") is not None else ET.SubElement(case, "system-out")
                out.text = (out.text or "") + f"\n[[ATTACHMENT|{bundle}]]\nFailure bundle: {bundle}\n"
                if f.get("status") == "traceback" and case.find("failure") is None and case.find("error") is None:
                    ET.SubElement(case, "failure", message="Traceback in a service log", type="traceback").text = f.get("error")
                linked += 1
                changed = True
        if changed:
            tree.write(path, encoding="utf-8", xml_declaration=True)
    return linked


def merge_junit(junit_dir: Path, out: Path) -> Path:
    """One <testsuites> file at `out` from the run's per-feature JUnit files, with summed counts."""
    suites = ET.Element("testsuites")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    elapsed = 0.0
    for path in sorted(Path(junit_dir).glob("*.xml")):
        root = ET.parse(path).getroot()
        for suite in ([root] if root.tag == "testsuite" else list(root.iter("testsuite"))):
            suites.append(suite)
            for k in totals:
                totals[k] += int(float(suite.get(k) or 0))
            elapsed += float(suite.get("time") or 0)
    suites.attrib.update({k: str(v) for k, v in totals.items()}, time=f"{elapsed:.3f}", name="apiary")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(out, encoding="utf-8", xml_declaration=True)
    return out


def write_index(run_dir: Path, summary: dict) -> Path:
    """index.html in the run dir (harness/report_html.py renders it from harness/templates/)."""
    from harness.report_html import write_index as write_page
    return write_page(run_dir, summary)


def table(summary: dict) -> str:
    """The final summary table printed by the runner."""
    lines = [f"{'status':<10} {'elapsed':>7}  scenario", "-" * 72]
    for s in summary["scenarios"]:
        extra = f"  -> {s['bundle']}" if s.get("bundle") else (f"  ({s['skip_reason']})" if s.get("skip_reason") else "")
        lines.append(f"{s['status'].upper():<10} {s.get('elapsed_s', s['duration_s']):>6.2f}s  {s['feature']} › {s['scenario']}{extra}")
    t = summary["totals"]
    lines += ["-" * 72, f"{t['total']} scenarios: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
              f"in {summary['elapsed_s']:.1f}s (steps {summary['duration_s']:.1f}s)"]
    for p, c in summary["by_priority"].items():
        if c["total"]:
            lines.append(f"  @{p}: {c['passed']}/{c['total']} passed, {c['failed']} failed, {c['skipped']} skipped")
    return "\n".join(lines)


def point_latest(report_dir: Path, run_dir: Path) -> None:
    """reports/latest -> <run-id> (relative symlink, replaced atomically)."""
    link = Path(report_dir) / "latest"
    tmp = Path(report_dir) / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path(run_dir).name)
    os.replace(tmp, link)
