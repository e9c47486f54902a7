"""The GitHub Actions example agrees with the runner: its timeouts exceed run-tests.sh's budget, it
publishes the JUnit file the runner writes, writes the job summary, and caches what the build reuses."""
import re
from pathlib import Path

import yaml

from harness import summary_md

ROOT = Path(__file__).resolve().parents[2]


def workflow():
    return yaml.safe_load((ROOT / ".github/workflows/integration.yml").read_text())


def budget_min() -> int:
    m = re.search(r'BUDGET_MIN="\$\{APIARY_TEST_BUDGET_MIN:-(\d+)\}"', (ROOT / "run-tests.sh").read_text())
    assert m, "run-tests.sh no longer declares its budget"
    return int(m.group(1))


def steps():
    return workflow()["jobs"]["integration"]["steps"]


def test_timeouts_are_longer_than_the_runners_own_budget():
    wf = workflow()
    budget = max(budget_min(), int(wf["env"]["APIARY_TEST_BUDGET_MIN"]))
    suite = next(s for s in steps() if "run-tests.sh" in s.get("run", ""))
    assert suite["timeout-minutes"] > budget
    assert wf["jobs"]["integration"]["timeout-minutes"] > suite["timeout-minutes"]


def test_the_junit_file_the_runner_writes_is_published_and_the_summary_written():
    suite = next(s for s in steps() if "run-tests.sh" in s.get("run", ""))
    junit = suite["run"].split("--junit-xml", 1)[1].split()[0]
    publish = next(s for s in steps() if "junit-report" in s.get("uses", ""))
    assert publish["with"]["report_paths"] == junit and publish["if"] == "always()"
    summary = next(s for s in steps() if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert "harness.summary_md" in summary["run"] and summary["if"] == "always()"


def test_wheelhouse_and_base_image_tarball_are_cached():
    paths = [s["with"]["path"] for s in steps() if s.get("uses", "").startswith("actions/cache")]
    assert ".wheelhouse" in paths
    tarball = workflow()["env"]["BASE_TARBALL"]
    assert paths.count("${{ env.BASE_TARBALL }}") == 2 and tarball.startswith(".build/")
    runs = " ".join(s.get("run", "") for s in steps())
    assert 'docker load -i "$BASE_TARBALL"' in runs and 'docker save -o "$BASE_TARBALL"' in runs
    assert ".wheelhouse" in (ROOT / "scripts/build-wheelhouse.sh").read_text()


def test_summary_markdown_lists_failures_first_and_names_an_environment_failure():
    s = {"run_id": "r1", "exit_code": 1, "seed": 3, "backend": "docker", "elapsed_s": 2.0,
         "totals": {"total": 2, "passed": 1, "failed": 1, "skipped": 0},
         "gate": {"passed": False, "reasons": ["1 scenario(s) failed"]},
         "scenarios": [{"feature": "F", "scenario": "ok", "status": "passed", "duration_s": 1.0},
                       {"feature": "F", "scenario": "a|b", "status": "failed", "duration_s": 1.0, "bundle": "failures/F/a"}]}
    text = summary_md.render(s).splitlines()
    assert text[0] == "## Apiary run r1: FAIL (exit 1)" and "- 1 scenario(s) failed" in text
    rows = [ln for ln in text if ln.startswith("| ")][1:]
    assert rows[0].startswith("| ❌ failed") and "a\\|b" in rows[0] and "failures/F/a" in rows[0]
    env = summary_md.render({"run_id": "r2", "exit_code": 2, "environment_error": "no Docker engine", "detail": "x"})
    assert "ENVIRONMENT FAILURE" in env and "no Docker engine" in env
