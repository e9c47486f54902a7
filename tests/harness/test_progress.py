"""The live progress lines: [n/N], elapsed, ETA and the scenario running now, from a real behave run."""
import os
import re
import subprocess
import sys
from pathlib import Path

from harness import progress
from tests.harness.scratch import write_features

ROOT = Path(__file__).resolve().parents[2]


def test_clock_eta_and_counter():
    assert progress.clock(62) == "1:02" and progress.clock(3723) == "1:02:03"
    assert progress.eta(0, 4, 0) == "?" and progress.eta(2, 4, 60) == "1:00"
    assert progress.counter(3, 12) == "[ 3/12]" and progress.counter(3, 0) == "[  3]"


def test_formatter_prints_running_line_with_eta_then_status_line(tmp_path):
    feats = write_features(tmp_path, "from behave import given\n@given('ok')\ndef ok(c):\n    pass\n"
                                     "@given('bad')\ndef bad(c):\n    assert False, 'observed 2, wanted 1'\n",
                           {"f": "Feature: F\n  Scenario: one\n    Given ok\n  Scenario: two\n    Given bad\n"
                                 "  Scenario: three\n    Given ok\n"})
    env = dict(os.environ, PYTHONPATH=str(ROOT), APIARY_PROGRESS_TOTAL="3")
    env.pop("APIARY_REPORT_DIR", None)
    out = subprocess.run([sys.executable, "-m", "behave", str(feats), "--no-summary", "-f",
                          "harness.progress:ProgressFormatter"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60).stdout.splitlines()
    out = [ln for ln in out if not ln.startswith("USING RUNNER")]
    assert re.fullmatch(r"\[1/3\] RUN +F › one  \(elapsed 0:0\d, ETA \?\)", out[0]), out
    assert re.match(r"\[1/3\] PASS +\d+\.\d\ds  F › one$", out[1]), out
    assert re.fullmatch(r"\[2/3\] RUN +F › two  \(elapsed 0:0\d, ETA \d:\d\d\)", out[2]), out
    assert re.match(r"\[2/3\] FAIL +\d+\.\d\ds  F › two$", out[3]) and "observed 2, wanted 1" in out[4], out
    assert out[-1].startswith("[3/3] PASS")
