"""The operator's guide and its alert rules: `promtool check rules` and `promtool test rules` pass, every alert is
unit-tested and links a runbook that exists, and every metric the services export is documented."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "apiary-rules.yml"
RULE_TESTS = ROOT / "docs" / "prometheus" / "apiary-rules.test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"""["'](apiary_[a-z_]+)["']""")     # every apiary_* literal of a metrics module


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from .tools/ or PATH, fetched by scripts/get-promtool.sh when missing (apt-get download)."""
    found = ROOT / ".tools" / "promtool"
    if found.is_file():
        return str(found)
    if shutil.which("promtool"):
        return shutil.which("promtool")
    if not shutil.which("apt-get"):
        pytest.skip("promtool is not installed and this machine has no apt-get to fetch it "
                    "(scripts/get-promtool.sh); install Prometheus' promtool to run these tests")
    p = subprocess.run([str(ROOT / "scripts" / "get-promtool.sh")], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"scripts/get-promtool.sh failed: {p.stderr.strip()}"
    return p.stdout.strip().splitlines()[-1]


def alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules(promtool):
    p = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_promtool_test_rules(promtool):
    p = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_promtool_test_rules_can_fail(promtool, tmp_path):
    """A rule test expecting an alert that cannot fire must fail: the unit tests are not vacuous."""
    (tmp_path / RULES.name).write_text(RULES.read_text())
    bad = {"rule_files": [RULES.name], "evaluation_interval": "15s", "tests": [{
        "interval": "1m", "input_series": [{"series": 'apiary_queue_depth{job="apiary-orchestrator"}',
                                            "values": "0x10"}],
        "alert_rule_test": [{"eval_time": "10m", "alertname": "ApiaryQueueDepthHigh",
                             "exp_alerts": [{"exp_labels": {"severity": "warning"}}]}]}]}
    (tmp_path / "bad.test.yml").write_text(yaml.safe_dump(bad))
    p = subprocess.run([promtool, "test", "rules", "bad.test.yml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and "FAILED" in p.stdout + p.stderr


def test_every_alert_is_unit_tested_firing():
    fired = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    missing = [a["alert"] for a in alerts() if a["alert"] not in fired]
    assert not missing, f"alerts with no promtool test that makes them fire: {missing}"


def test_no_alert_depends_on_a_recording_rule():
    """Rule groups evaluate in no fixed order: an alert on a recorded series fires a cycle late now and then."""
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    assert recorded, "the recording rules are gone"
    for a in alerts():
        assert not any(name in a["expr"] for name in recorded), a["alert"]


def test_every_runbook_link_names_a_section_of_operations_md():
    text = OPERATIONS.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for a in alerts():
        path, _, anchor = a["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, (a["alert"], anchor, sorted(anchors))


def test_every_exported_metric_is_documented():
    exported = {m for f in (ROOT / "services").rglob("metrics.py") for m in METRIC.findall(f.read_text())}
    assert len(exported) >= 20, f"the metric scan found too little: {sorted(exported)}"
    documented = set(re.findall(r"`(apiary_[a-z_]+)", OPERATIONS.read_text()))
    assert not exported - documented, f"metrics missing from docs/operations.md: {sorted(exported - documented)}"


def test_metrics_are_defined_only_in_metrics_modules():
    """The scan above reads services/*/metrics.py; a metric defined elsewhere would escape it."""
    elsewhere = [str(f.relative_to(ROOT)) for f in (ROOT / "services").rglob("*.py") if f.name != "metrics.py"
                 and re.search(r"""(?:Counter|Gauge|Histogram|Summary|MetricFamily)\(\s*["']apiary_""", f.read_text())]
    assert not elsewhere, f"apiary_* metrics defined outside a metrics.py: {elsewhere}"
