"""--allure: the runner adds allure-behave's formatter, and a failed scenario's bundle files are attached to
its Allure result (apiary_suite.gather.attach_to_allure, called by the after_scenario hook); a passing one has none."""
import json
import subprocess
import sys
from pathlib import Path

from harness.options import parse_args
from harness.runner import ALLURE_DIR, behave_command
from tests.harness.scratch import write_features

ROOT = Path(__file__).resolve().parents[2]


def test_allure_adds_its_formatter_only_when_asked(tmp_path):
    with_it = behave_command(parse_args(["--allure"]), tmp_path)
    without = behave_command(parse_args([]), tmp_path)
    i = with_it.index("allure_behave.formatter:AllureFormatter")
    assert with_it[i + 1:i + 3] == ["-o", str(tmp_path / ALLURE_DIR)]
    assert "allure_behave.formatter:AllureFormatter" not in without
    assert with_it.index("harness.progress:ProgressFormatter") > i   # the progress formatter keeps stdout, last


def test_a_failed_scenarios_bundle_is_attached_and_a_passing_one_gets_nothing(tmp_path):
    bundle = tmp_path / "bundle"
    hooks = ("from pathlib import Path\nfrom apiary_suite.gather import attach_to_allure\n"
             "def after_scenario(context, scenario):\n"
             "    if scenario.status.name == 'failed':\n"
             f"        b = Path({str(bundle)!r}); (b / 'logs').mkdir(parents=True, exist_ok=True)\n"
             "        (b / 'failure.txt').write_text('boom'); (b / 'logs' / 'orchestrator.log').write_text('{}')\n"
             "        attach_to_allure(b)\n")
    feats = write_features(tmp_path, "from behave import given\n@given('it fails')\ndef f(c): assert False, 'boom'\n"
                                     "@given('it passes')\ndef p(c): pass\n",
                           {"x": "Feature: X\n  Scenario: fails\n    Given it fails\n  Scenario: passes\n    Given it passes\n"},
                           environment=hooks)
    out = tmp_path / ALLURE_DIR
    proc = subprocess.run([sys.executable, "-m", "behave", str(feats), "-f", "allure_behave.formatter:AllureFormatter",
                           "-o", str(out), "-f", "plain"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = {r["name"]: r for r in (json.loads(p.read_text()) for p in out.glob("*-result.json"))}
    assert results["fails"]["status"] == "failed" and results["passes"]["status"] == "passed"
    names = sorted(a["name"] for a in results["fails"].get("attachments", []))
    assert names == ["failure.txt", "logs/orchestrator.log"], results["fails"]
    assert not results["passes"].get("attachments")
    attached = {a["name"]: (out / a["source"]).read_text() for a in results["fails"]["attachments"]}
    assert attached["failure.txt"] == "boom"
