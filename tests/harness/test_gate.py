"""The gate: gate.yml validated key by key, verdicts over summaries, and a fallback to local processes
that skipped the @container scenarios."""
import subprocess
import sys

import pytest

from harness.gate import DEFAULT_GATE, GateError, apply_gate, load_gate, validate
from tests.harness.test_report import summary_of

# Runs the runner over local processes: never beside another such file under xdist (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("runner-local")


def test_gate_holds_when_everything_passed(tmp_path):
    s = summary_of(tmp_path, [("a", ["p0"], "passed")])
    assert apply_gate(s, DEFAULT_GATE)["passed"]


def test_gate_fails_on_a_p0_failure_and_names_the_tag(tmp_path):
    s = summary_of(tmp_path, [("a", ["p0"], "failed"), ("b", ["p1"], "passed")])
    verdict = apply_gate(s, {**DEFAULT_GATE, "must_pass": ["@p0"]})
    assert not verdict["passed"] and any("@p0 must pass" in r for r in verdict["reasons"])


def test_gate_flake_budget_tolerates_flaky_failures_within_budget(tmp_path):
    s = summary_of(tmp_path, [("a", ["flaky", "p2"], "failed"), ("b", ["p0"], "passed")])
    assert apply_gate(s, {**DEFAULT_GATE, "flake_budget": 1})["passed"]
    assert not apply_gate(s, {**DEFAULT_GATE, "flake_budget": 0})["passed"]


def test_gate_refuses_a_skip_where_skips_are_not_allowed(tmp_path):
    s = summary_of(tmp_path, [("a", ["p0"], "skipped"), ("b", ["p2"], "skipped"), ("c", ["p0"], "passed")])
    verdict = apply_gate(s, {**DEFAULT_GATE, "allow_skips": {"p0": False}})
    assert not verdict["passed"] and len([r for r in verdict["reasons"] if "skip not allowed" in r]) == 1


def test_gate_fails_when_nothing_ran(tmp_path):
    s = summary_of(tmp_path, [])
    assert not apply_gate(s, DEFAULT_GATE)["passed"]


def test_load_gate_reads_the_repository_policy():
    from harness.runner import ROOT
    policy = load_gate(ROOT / "gate.yml")
    assert "p0" in policy["must_pass"] and isinstance(policy["flake_budget"], int)


def test_a_run_of_only_skips_does_not_pass(tmp_path):
    s = summary_of(tmp_path, [("a", ["p2"], "skipped")])
    verdict = apply_gate(s, DEFAULT_GATE)
    assert not verdict["passed"] and "only 0 scenario(s) ran (1 skipped)" in verdict["reasons"][0]


def test_fallback_that_skipped_container_scenarios_fails_the_gate(tmp_path):
    s = summary_of(tmp_path, [("a", ["container", "p1"], "skipped"), ("b", ["p0"], "passed")])
    s["backend_fallback"] = "no Docker engine reachable"
    verdict = apply_gate(s, validate({}))
    assert not verdict["passed"]
    assert any("1 @container scenario(s) were skipped" in r and "no Docker engine" in r for r in verdict["reasons"])


def test_fallback_skips_pass_only_when_the_policy_says_so_explicitly(tmp_path):
    s = summary_of(tmp_path, [("a", ["container", "p1"], "skipped"), ("b", ["p0"], "passed")])
    s["backend_fallback"] = "no Docker engine reachable"
    assert apply_gate(s, validate({"allow_skips": {"container": True}}))["passed"]
    assert not apply_gate(s, validate({"default_allow_skips": True}))["passed"]


def test_an_explicit_local_backend_follows_the_skip_policy(tmp_path):
    s = summary_of(tmp_path, [("a", ["container", "p1"], "skipped"), ("b", ["p0"], "passed")])
    assert apply_gate(s, validate({}))["passed"]
    assert not apply_gate(s, validate({"allow_skips": {"container": False}}))["passed"]


@pytest.mark.parametrize("raw, key", [
    ({"must_pass": "p0"}, "must_pass"),                  # a string is not a list (was read letter by letter)
    ({"must_pas": ["p0"]}, "must_pas"),                  # a typo
    ({"flake_budget": "1"}, "flake_budget"),
    ({"flake_budget": -1}, "flake_budget"),
    ({"min_scenarios": True}, "min_scenarios"),
    ({"allow_skips": {"p0": "no"}}, "allow_skips"),
    ({"default_allow_skips": 1}, "default_allow_skips"),
    ({"soak": {"max_recovery": 3}}, "max_recovery"),
    ({"soak": {"min_availability": 2}}, "min_availability"),
    ([1, 2], "mapping"),
])
def test_validation_names_the_bad_key(raw, key):
    with pytest.raises(GateError, match=key):
        validate(raw, "g.yml")


def test_the_repository_policy_validates_and_denies_fallback_skips():
    from harness.runner import ROOT
    policy = load_gate(ROOT / "gate.yml")
    assert policy["allow_skips"].get("container") is not True
    assert policy["soak"]["max_recovery_s"] > 0


def test_the_runner_exits_2_naming_the_key_of_a_bad_gate_file(tmp_path):
    bad = tmp_path / "gate.yml"
    bad.write_text("must_pass: p0\nflake_budgt: 1\n")
    proc = subprocess.run([sys.executable, "-m", "harness.runner", "--gate", str(bad), "--report-dir", str(tmp_path),
                           "--backend", "local"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "must_pass" in proc.stdout and str(bad) in proc.stdout


def test_unparsable_yaml_names_the_file(tmp_path):
    bad = tmp_path / "gate.yml"
    bad.write_text("must_pass: [p0\n")
    with pytest.raises(GateError, match="not valid YAML"):
        load_gate(bad)


def run_without_engine(tmp_path, gate_file=None):
    """The runner with no reachable engine and no --backend: one passing and one @container scenario."""
    from harness.runner import ROOT
    env = dict(__import__("os").environ, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    cmd = [str(ROOT / "run-integration-tests.sh"), "--tags", "@integration", "--report-dir", str(tmp_path / "r")]
    cmd += ["--gate", str(gate_file)] if gate_file else []
    cmd += ["--", "-n", "Every service is running and healthy", "-n", "A corrupt registry database is moved aside"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    summary = __import__("json").loads(((tmp_path / "r" / "latest").resolve() / "summary.json").read_text())
    return out, summary


def test_a_run_that_fell_back_to_local_and_skipped_container_scenarios_exits_1(tmp_path):
    out, summary = run_without_engine(tmp_path)
    assert "No Docker engine reachable" in out.stdout, out.stdout[-2000:]
    assert out.returncode == 1, out.stdout[-3000:]
    assert summary["totals"] == {"total": 2, "passed": 1, "failed": 0, "skipped": 1}, summary["totals"]
    assert summary["backend_fallback"].startswith("no Docker engine reachable")
    assert any("@container scenario(s) were skipped" in r for r in summary["gate"]["reasons"]), summary["gate"]


def test_the_same_fallback_passes_when_the_policy_explicitly_allows_container_skips(tmp_path):
    policy = tmp_path / "gate.yml"
    policy.write_text("must_pass: [p0]\nallow_skips: {container: true}\n")
    out, summary = run_without_engine(tmp_path, policy)
    assert out.returncode == 0, out.stdout[-3000:]
    assert summary["gate"]["passed"] and summary["totals"]["skipped"] == 1
