"""summary.json, gate verdicts, JUnit links, the table and the latest symlink."""
import json
import xml.etree.ElementTree as ET

from harness import report


def behave_json(tmp_path, scenarios):
    """A behave JSON file with one feature holding the given (name, tags, status) scenarios."""
    data = [{"name": "F", "tags": ["integration"], "status": "failed", "elements": [
        {"type": "scenario", "name": n, "tags": tags, "status": st, "location": f"f.feature:{i}",
         "steps": [{"result": {"status": st, "duration": 0.25}}]} for i, (n, tags, st) in enumerate(scenarios)]}]
    path = tmp_path / "behave.json"
    path.write_text(json.dumps(data))
    return path


def summary_of(tmp_path, scenarios, failures=(), skips=()):
    rows = report.merge(report.scenarios_from_behave(behave_json(tmp_path, scenarios)), list(failures), list(skips))
    return report.summarize(rows, {"run_id": "r1", "seed": 1})


def test_counts_by_tag_and_priority_with_feature_tags_inherited(tmp_path):
    s = summary_of(tmp_path, [("a", ["p0"], "passed"), ("b", ["p1"], "failed"), ("c", ["p1"], "skipped")])
    assert s["totals"] == {"total": 3, "passed": 1, "failed": 1, "skipped": 1}
    assert s["by_priority"]["p1"] == {"total": 2, "passed": 0, "failed": 1, "skipped": 1}
    assert s["by_tag"]["integration"]["total"] == 3
    assert s["duration_s"] == 0.75


def test_traceback_failure_turns_a_passed_scenario_red_and_carries_the_bundle(tmp_path):
    fail = {"feature": "F", "scenario": "a", "status": "traceback", "bundle": "failures/F/a", "step": None, "error": "tb"}
    s = summary_of(tmp_path, [("a", ["p0"], "passed")], failures=[fail])
    assert s["totals"]["failed"] == 1 and s["failures"][0]["bundle"] == "failures/F/a"


def test_skip_reason_is_recorded(tmp_path):
    skip = {"feature": "F", "scenario": "a", "reason": "needs container-level faults"}
    s = summary_of(tmp_path, [("a", ["container"], "skipped")], skips=[skip])
    assert s["skipped"][0]["reason"] == "needs container-level faults"


def test_link_junit_adds_bundle_property_and_attachment(tmp_path):
    junit = tmp_path / "junit"
    junit.mkdir()
    (junit / "TESTS-f.xml").write_text('<testsuite><testcase classname="f.F" name="a" status="failed">'
                                       '<failure message="x"/></testcase><testcase name="b"/></testsuite>')
    n = report.link_junit(junit, [{"scenario": "a", "bundle": "failures/F/a", "status": "failed"}], tmp_path)
    case = ET.parse(junit / "TESTS-f.xml").getroot().find("testcase")
    assert n == 1 and case.find("properties/property").get("value").endswith("failures/F/a")
    assert "[[ATTACHMENT|" in case.find("system-out").text


def test_table_and_index_show_the_bundle(tmp_path):
    fail = {"feature": "F", "scenario": "a", "status": "failed", "bundle": "failures/F/a"}
    s = summary_of(tmp_path, [("a", ["p0"], "failed")], failures=[fail])
    s.update(gate={"passed": False, "reasons": ["1 scenario(s) failed"]}, exit_code=1)
    assert "-> failures/F/a" in report.table(s)
    assert 'href=failures/F/a/' in report.write_index(tmp_path, s).read_text()


def test_point_latest_is_a_relative_symlink_replaced_each_run(tmp_path):
    for run in ("r1", "r2"):
        (tmp_path / run).mkdir()
        report.point_latest(tmp_path, tmp_path / run)
    assert (tmp_path / "latest").resolve() == (tmp_path / "r2").resolve()
    assert str((tmp_path / "latest").readlink()) == "r2"
