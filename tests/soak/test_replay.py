"""Replay and shrink helpers: compressing a schedule, the failure signature, finding soak dirs, JUnit rows."""
import json
import xml.etree.ElementTree as ET

import pytest

from apiary_suite.soak_replay import compress, find_soak_dirs, replay_length, signature
from apiary_suite.soak_run import scenarios_of, write_junit


def item(start, dur, target="worker-a1"):
    return {"start_s": start, "duration_s": dur, "kind": "pause", "target": target, "params": {}}


def test_compress_keeps_order_durations_and_overlaps_but_caps_gaps():
    sched = [item(40.0, 2.0), item(41.0, 3.0, "hive-a"), item(90.0, 1.0)]
    got = compress(sched, lead_s=2.0, max_gap_s=3.0)
    assert [g["duration_s"] for g in got] == [2.0, 3.0, 1.0]
    assert got[0]["start_s"] == 2.0 and got[1]["start_s"] == 3.0      # the overlap is kept
    assert got[2]["start_s"] == 3.0 + 3.0 + 3.0                          # gap after the last end capped at 3 s
    assert replay_length(got, 4.0) == 9.0 + 1.0 + 4.0


def test_signature_names_failed_checks_and_anomaly_kinds():
    result = {"checks": {"checker": {"passed": False}, "recovery": {"passed": True}},
              "verdict": {"anomalies": [{"kind": "duplicate-execution"}, {"kind": "lost"}]}}
    assert signature(result) == {"checker", "anomaly:duplicate-execution", "anomaly:lost"}
    assert signature({"checks": {"checker": {"passed": True}}, "verdict": {}}) == set()


def test_find_soak_dirs_names_the_path_when_there_is_no_schedule(tmp_path):
    (tmp_path / "run" / "soak").mkdir(parents=True)
    (tmp_path / "run" / "soak" / "schedule.json").write_text("{}")
    assert find_soak_dirs(tmp_path / "run") == [tmp_path / "run" / "soak"]
    schedule = tmp_path / "run" / "soak" / "schedule.json"
    assert find_soak_dirs(schedule) == [schedule], "the documented --replay schedule.json form"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        (tmp_path / "empty").mkdir()
        find_soak_dirs(tmp_path / "empty")


def test_junit_has_one_case_per_check_and_a_failure_for_each_failed_one(tmp_path):
    result = {"name": "soak", "seed": 3, "elapsed_s": 12.0,
              "checks": {"checker": {"passed": False, "detail": "verdict False: 2 anomalies"},
                         "recovery": {"passed": True, "detail": "recovered in 1.2s"}}}
    rows = scenarios_of(result, "soak")
    path = write_junit(tmp_path, rows)
    cases = ET.parse(path).getroot().findall("testcase")
    assert [c.get("name") for c in cases] == ["soak seed 3: checker", "soak seed 3: recovery"]
    assert cases[0].find("failure").get("message") == "verdict False: 2 anomalies" and cases[1].find("failure") is None


@pytest.mark.parametrize("flag,make,says", [
    ("--replay", None, "no such file or directory"),
    ("--replay", "dir", "no schedule.json in it or below it"),
    ("--shrink", "dir", "no schedule.json in it or below it"),
    ("--shrink", "file", "not a directory"),
])
def test_replay_and_shrink_paths_without_a_schedule_are_usage_errors_naming_them(tmp_path, capsys, flag, make, says):
    from harness.options import EXIT_USAGE, parse_args
    path = tmp_path / "given"
    if make == "dir":
        path.mkdir()
    elif make == "file":
        path.write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        parse_args([flag, str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == EXIT_USAGE and f"{flag} {path}: {says}" in err, err


def test_replay_accepts_a_run_directory_or_the_schedule_file(tmp_path):
    from harness.options import parse_args
    (tmp_path / "run" / "soaks" / "s").mkdir(parents=True)
    (tmp_path / "run" / "soaks" / "s" / "schedule.json").write_text("{}")
    assert parse_args(["--replay", str(tmp_path / "run")]).replay == str(tmp_path / "run")
    assert parse_args(["--replay", str(tmp_path / "run" / "soaks" / "s" / "schedule.json")]).chaos is True
    assert parse_args(["--shrink", str(tmp_path / "run")]).shrink == str(tmp_path / "run")
