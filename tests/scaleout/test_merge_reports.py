"""merge-reports over fabricated shard run directories (summary.json and behave-style JUnit files) of the
repo's real @integration selection: verdicts, the shard reasons, rebased bundle links and the CLI."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import gate, merge_reports, report, selection, shard_plan
from harness.report_html import href
from harness.selection import ROOT

POLICY = gate.load_gate(ROOT / "gate.yml")


@pytest.fixture(scope="module")
def items():
    """The scenarios `--tags @integration` selects in this checkout."""
    return selection.select(selection.make_selection([], ["@integration"], []))


def record(item, status="passed"):
    """The summary.json record of a scenario that ran."""
    return {"feature": item.feature, "scenario": item.name, "location": item.location, "tags": sorted(item.tags),
            "status": status, "duration_s": 1.5, "elapsed_s": 2.0}


def write_junit(run_dir, records):
    """behave's JUnit layout: one TESTS-<file>.xml per feature, classname `<file>.<feature>`."""
    junit = run_dir / "junit"
    junit.mkdir(parents=True, exist_ok=True)
    by_file = {}
    for r in records:
        by_file.setdefault(Path(r["location"].split(":")[0]).stem, []).append(r)
    for stem, rows in by_file.items():
        name = f"{stem}.{rows[0]['feature']}"
        bad = [r for r in rows if r["status"] in report.FAILED]
        suite = ET.Element("testsuite", name=name, tests=str(len(rows)), errors="0", failures=str(len(bad)),
                           skipped="0", time=str(2.0 * len(rows)))
        for r in rows:
            case = ET.SubElement(suite, "testcase", classname=name, name=r["scenario"], status=r["status"], time="2.0")
            if r in bad:
                ET.SubElement(case, "failure", message="assert failed", type="AssertionError").text = "boom"
        ET.ElementTree(suite).write(junit / f"TESTS-{stem}.xml", encoding="utf-8", xml_declaration=True)


def write_run(run_dir, records, shard=None, env_error=None):
    """A run directory as the runner leaves it: summary.json (+ shard meta), junit/, a bundle per failure."""
    run_dir.mkdir(parents=True)
    meta = {"run_id": run_dir.name, "seed": 7, "git_revision": "abc123", "backend": "docker",
            **({"shard": shard} if shard else {})}
    if env_error:
        summary = {**meta, "exit_code": 2, "environment_error": env_error, "detail": "dockerd went away"}
    else:
        for r in records:
            if r["status"] in report.FAILED:
                r["bundle"] = f"failures/{r['feature']}/{r['scenario']}"[:120]
                (run_dir / r["bundle"]).mkdir(parents=True)
                (run_dir / r["bundle"] / "scenario.log").write_text("the failing step's log\n")
                r.update(error="assert failed", failed_step="Then it works")
        summary = report.summarize(records, meta)
        summary["gate"] = gate.apply_gate(summary, POLICY)
        summary["exit_code"] = 0 if summary["gate"]["passed"] else 1
        write_junit(run_dir, records)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def shard_runs(tmp_path, items, n, fail=(), skip_index=(), env_failed=(), all_items=None, engines=None):
    """N shard dirs of the LPT plan; `fail` names scenarios that fail; returns (dirs, plan)."""
    plan = shard_plan.plan_shards(items, n, {})
    dirs = []
    for k, part in enumerate(plan, 1):
        if k in skip_index:
            continue
        engine = (engines or {}).get(k, f"unix:///run/engine-{k}.sock")
        meta = shard_plan.shard_meta(k, n, part, all_items or items, engine)
        records = [record(i, "failed" if i.name in fail else "passed") for i in part]
        dirs.append(write_run(tmp_path / "run" / "shards" / str(k), records, meta,
                              "engine unreachable" if k in env_failed else None))
    return dirs, plan


def test_all_shards_pass_merge_to_exit_0_with_one_report(tmp_path, items):
    dirs, plan = shard_runs(tmp_path, items, 3)
    out = tmp_path / "merged"
    s = merge_reports.merge_runs(dirs, out, POLICY)
    assert s["exit_code"] == 0 and s["gate"]["passed"] and s["gate"]["reasons"] == []
    assert s["totals"] == {"total": len(items), "passed": len(items), "failed": 0, "skipped": 0}
    assert [x["index"] for x in s["shards"]] == [1, 2, 3]
    assert s["shards"][1]["engine"] == "unix:///run/engine-2.sock" and s["shards"][1]["totals"]["total"] == len(plan[1])
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 0
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.tag == "testsuites" and int(junit.get("tests")) == len(items)
    assert "PASS" in (out / "index.html").read_text()


def test_one_failed_scenario_fails_the_merge_with_gate_reasons_and_a_working_bundle_link(tmp_path, items):
    victim = next(i for i in items if "p0" in i.tags)
    dirs, _ = shard_runs(tmp_path, items, 3, fail={victim.name})
    out = tmp_path / "out" / "merged"
    s = merge_reports.merge_runs(dirs, out, POLICY)
    assert s["exit_code"] == 1 and not s["gate"]["passed"]
    assert "1 scenario(s) failed" in s["gate"]["reasons"] and any("@p0 must pass" in r for r in s["gate"]["reasons"])
    (failure,) = s["failures"]
    assert failure["scenario"] == victim.name and failure["bundle"].startswith("..")
    assert (out / failure["bundle"] / "scenario.log").read_text() == "the failing step's log\n"
    page = (out / "index.html").read_text()
    assert "FAIL" in page and "scenario.log" in page
    assert int(ET.parse(out / "junit.xml").getroot().get("failures")) == 1


def test_a_missing_shard_fails_the_gate_naming_it(tmp_path, items):
    dirs, plan = shard_runs(tmp_path, items, 4, skip_index={3})
    s = merge_reports.merge_runs(dirs, tmp_path / "merged", POLICY)
    assert s["exit_code"] == 1
    assert f"shard 3/4 missing: its {len(plan[2])} planned scenarios did not run" in s["gate"]["reasons"]
    assert s["totals"]["total"] == len(items) - len(plan[2])


def test_an_environment_failed_shard_reports_its_scenarios_as_errors_naming_the_engine(tmp_path, items):
    dirs, plan = shard_runs(tmp_path, items, 3, env_failed={2}, engines={2: "tcp://engine-b:2376"})
    s = merge_reports.merge_runs(dirs, tmp_path / "merged", POLICY)
    assert s["exit_code"] == 1
    errors = [x for x in s["scenarios"] if x["status"] == "error"]
    assert {x["scenario"] for x in errors} == {i.name for i in plan[1]}
    assert all("shard 2/3" in x["error"] and "tcp://engine-b:2376" in x["error"] and "engine unreachable" in x["error"]
               for x in errors)
    assert any("shard 2/3 on engine tcp://engine-b:2376" in r for r in s["gate"]["reasons"])
    junit = ET.parse(tmp_path / "merged" / "junit.xml").getroot()
    assert int(junit.get("errors")) == len(plan[1]) and int(junit.get("tests")) == len(items)


def test_every_shard_failing_its_environment_exits_2(tmp_path, items):
    dirs, _ = shard_runs(tmp_path, items, 2, env_failed={1, 2})
    s = merge_reports.merge_runs(dirs, tmp_path / "merged", POLICY)
    assert s["exit_code"] == 2 and "engine-1" in s["detail"] and "engine-2" in s["detail"]
    assert "ENVIRONMENT FAILURE" in (tmp_path / "merged" / "index.html").read_text()


def test_a_scenario_in_two_shards_is_a_reason(tmp_path, items):
    dirs, plan = shard_runs(tmp_path, items, 2)
    twice = plan[1][0]
    path = dirs[0] / "summary.json"
    summary = json.loads(path.read_text())
    summary["scenarios"].append(record(twice))
    path.write_text(json.dumps(summary))
    s = merge_reports.merge_runs(dirs, tmp_path / "merged", POLICY)
    assert s["exit_code"] == 1 and s["totals"]["total"] == len(items)
    (reason,) = [r for r in s["gate"]["reasons"] if "more than one shard" in r]
    assert twice.name in reason and "shard 1/2" in reason and "shard 2/2" in reason


def test_shards_of_different_selections_are_a_reason(tmp_path, items):
    dirs, _ = shard_runs(tmp_path, items, 2)
    path = dirs[1] / "summary.json"
    summary = json.loads(path.read_text())
    summary["shard"]["fingerprint"] = shard_plan.fingerprint(items[1:])
    summary["shard"]["count"] = 3
    path.write_text(json.dumps(summary))
    reasons = merge_reports.merge_runs(dirs, tmp_path / "merged", POLICY)["gate"]["reasons"]
    assert any(r.startswith("shards disagree on the selection fingerprint") for r in reasons)
    assert any(r.startswith("shards disagree on the shard count") for r in reasons)


def test_a_planned_scenario_without_a_result_is_an_error(tmp_path, items):
    dirs, plan = shard_runs(tmp_path, items, 2)
    path = dirs[0] / "summary.json"
    summary = json.loads(path.read_text())
    lost = summary["scenarios"].pop()
    path.write_text(json.dumps(summary))
    s = merge_reports.merge_runs(dirs, tmp_path / "merged", POLICY)
    assert s["exit_code"] == 1
    assert any("shard 1/2: 1 planned scenario(s) have no result" in r and lost["scenario"].strip() in r for r in s["gate"]["reasons"])
    (err,) = [x for x in s["scenarios"] if x["status"] == "error"]
    assert err["scenario"] == lost["scenario"] and "no result" in err["error"]


def test_plain_runs_merge_as_a_union_without_shard_reasons(tmp_path, items):
    a = write_run(tmp_path / "a", [record(i) for i in items[:5]])
    b = write_run(tmp_path / "b", [record(i) for i in items[5:9]] + [record(items[0], "failed")])
    s = merge_reports.merge_runs([a, b], tmp_path / "merged", POLICY)
    assert s["totals"] == {"total": 9, "passed": 8, "failed": 1, "skipped": 0}    # the repeat: its worst result
    assert s["exit_code"] == 1 and not any("shard" in r for r in s["gate"]["reasons"])
    assert merge_reports.merge_runs([a], tmp_path / "merged-a", POLICY)["exit_code"] == 0


def test_cli_usage_errors_exit_4_naming_the_dir(tmp_path, capsys):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert merge_reports.main([str(empty), "--out", str(tmp_path / "m")]) == 4
    assert f"{empty}: no summary.json" in capsys.readouterr().err
    assert merge_reports.main([str(tmp_path / "nowhere")]) == 4
    assert "nowhere: no such run directory" in capsys.readouterr().err
    (empty / "summary.json").write_text("{truncated")
    assert merge_reports.main([str(empty)]) == 4
    assert str(empty / "summary.json") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        merge_reports.main([])
    assert exc.value.code == 4 and "RUN_DIR" in capsys.readouterr().err


def test_cli_prints_the_table_and_verdict_and_copies_junit(tmp_path, items, capsys):
    dirs, _ = shard_runs(tmp_path, items, 2)
    code = merge_reports.main([*map(str, dirs), "--out", str(tmp_path / "m"), "--junit-xml", str(tmp_path / "j" / "all.xml")])
    out = capsys.readouterr().out
    assert code == 0 and "Gate: HOLDS" in out and f"{len(items)} scenarios: {len(items)} passed" in out
    assert ET.parse(tmp_path / "j" / "all.xml").getroot().get("tests") == str(len(items))
    bad = tmp_path / "gate.yml"
    bad.write_text("must_pas: [p0]\n")
    assert merge_reports.main([*map(str, dirs), "--gate", str(bad)]) == 2
    assert "must_pas" in capsys.readouterr().err


def test_python_m_runs_the_cli(tmp_path, items):
    dirs, _ = shard_runs(tmp_path, items, 2, skip_index={2})
    proc = subprocess.run([sys.executable, "-m", "harness.merge_reports", str(dirs[0]), "--out", str(tmp_path / "m")],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Gate: FAILS" in proc.stdout and "shard 2/2 missing" in proc.stdout


def test_a_sharded_parent_merges_into_its_own_dir_with_its_meta(tmp_path, items):
    victim = items[0]
    dirs, _ = shard_runs(tmp_path, items, 2, fail={victim.name})
    parent = tmp_path / "run"
    given = {"run_id": "parent-1", "images": {"apiary/orchestrator": "sha256:1"}, "shard": {"index": 9}, "exit_code": 0}
    s = merge_reports.merge_runs(dirs, parent, POLICY, meta=given)
    assert s["run_id"] == "parent-1" and s["images"] == given["images"] and "shard" not in s
    assert s["exit_code"] == 1 and s["merged_from"] == [str(d.resolve()) for d in dirs]
    bundle = s["failures"][0]["bundle"]
    assert bundle.startswith("shards/1/failures/") and (parent / bundle / "scenario.log").is_file()
    assert f'href="{href(bundle)}/"' in (parent / "index.html").read_text()
