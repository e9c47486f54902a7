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
    n = report.link_junit(junit, [{"feature": "F", "scenario": "a", "bundle": "failures/F/a", "status": "failed"}], tmp_path)
    case = ET.parse(junit / "TESTS-f.xml").getroot().find("testcase")
    assert n == 1 and case.find("properties/property").get("value").endswith("failures/F/a")
    assert "[[ATTACHMENT|" in case.find("system-out").text


def test_table_and_index_show_the_bundle(tmp_path):
    fail = {"feature": "F", "scenario": "a", "status": "failed", "bundle": "failures/F/a"}
    s = summary_of(tmp_path, [("a", ["p0"], "failed")], failures=[fail])
    s.update(gate={"passed": False, "reasons": ["1 scenario(s) failed"]}, exit_code=1)
    assert "-> failures/F/a" in report.table(s)
    assert 'href="failures/F/a/"' in report.write_index(tmp_path, s).read_text()


def test_point_latest_is_a_relative_symlink_replaced_each_run(tmp_path):
    for run in ("r1", "r2"):
        (tmp_path / run).mkdir()
        report.point_latest(tmp_path, tmp_path / run)
    assert (tmp_path / "latest").resolve() == (tmp_path / "r2").resolve()
    assert str((tmp_path / "latest").readlink()) == "r2"


FEATURE_A = """Feature: Alpha
  Scenario: Same name
    Given the value is 1

  Scenario Outline: Row <n>
    Given the value is <n>
    Examples: numbers
      | n |
      | 1 |
      | 2 |
      | 3 |
"""
FEATURE_B = """Feature: Beta
  Scenario: Same name
    Given the value is 2
"""
STEPS = """from behave import given

@given("the value is {n:d}")
def step(context, n):
    assert n == 1, f"value {n}"
"""


def behave_junit(tmp_path):
    """Real behave JUnit for two features: 'Same name' in both (Beta's fails), outline rows 1..3 (2, 3 fail)."""
    import subprocess
    import sys
    from tests.harness.scratch import write_features
    feats = write_features(tmp_path, STEPS, {"a": FEATURE_A, "b": FEATURE_B})
    junit = tmp_path / "junit"
    proc = subprocess.run([sys.executable, "-m", "behave", str(feats), "--junit", "--junit-directory", str(junit),
                           "-f", "json", "-o", str(tmp_path / "behave.json")], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return junit


def linked_cases(junit):
    """{(classname, name): bundle property} of every linked testcase."""
    out = {}
    for path in junit.glob("*.xml"):
        for case in ET.parse(path).getroot().iter("testcase"):
            prop = case.find("properties/property[@name='bundle']")
            if prop is not None:
                out[(case.get("classname"), case.get("name").strip())] = prop.get("value")
    return out


def test_link_junit_links_outline_rows_and_keeps_same_named_scenarios_of_two_features_apart(tmp_path):
    junit = behave_junit(tmp_path)
    failed = [s for s in report.scenarios_from_behave(tmp_path / "behave.json") if s["status"] == "failed"]
    failures = [{**s, "bundle": f"failures/{s['feature']}/{i}"} for i, s in enumerate(failed)]
    assert {(f["feature"], f["scenario"].strip()) for f in failures} == {
        ("Beta", "Same name"), ("Alpha", "Row 2 -- @1.2 numbers"), ("Alpha", "Row 3 -- @1.3 numbers")}
    n = report.link_junit(junit, failures, tmp_path)
    links = linked_cases(junit)
    assert n == 3 and len(links) == 3
    assert links[("a.Alpha", "Row 2 -- @1.2 numbers")].endswith(f"failures/Alpha/{failed.index(next(s for s in failed if '@1.2' in s['scenario']))}")
    assert links[("b.Beta", "Same name")].startswith(str(tmp_path / "failures" / "Beta"))
    assert ("a.Alpha", "Same name") not in links and ("a.Alpha", "Row 1 -- @1.1 numbers") not in links


def test_merge_junit_writes_one_testsuites_file_with_summed_counts(tmp_path):
    junit = behave_junit(tmp_path)
    out = report.merge_junit(junit, tmp_path / "out" / "all.xml")
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and len(root.findall("testsuite")) == 2
    assert root.get("tests") == "5" and root.get("failures") == "3"
    assert sorted(c.get("name").strip() for c in root.iter("testcase"))[0] == "Row 1 -- @1.1 numbers"
