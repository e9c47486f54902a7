"""End-to-end runner checks on the Docker engine: --help, interrupted runs leave nothing behind,
the selftest failure exits 1 with a complete bundle. Few and fast; skipped without an engine."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.sweep import leftovers
from apiary_suite.gather import BUNDLE_FILES

ROOT = Path(__file__).resolve().parents[2]
RUNNER = str(ROOT / "run-integration-tests.sh")


def start_run(tmp_path, *args):
    """Start the runner with its own report dir; returns the process (stdout line-buffered text)."""
    return subprocess.Popen([RUNNER, "--report-dir", str(tmp_path), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def read_until(proc, pattern, timeout_s):
    """Lines of the runner until one matches `pattern` (fails naming it when the deadline passes)."""
    lines, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    pytest.fail(f"runner output never matched {pattern!r} within {timeout_s}s:\n{''.join(lines)[-3000:]}")


def run_id_of(lines):
    return re.search(r"integration run (\S+)", lines[0] if lines else "").group(1)


def test_help_documents_every_option():
    out = subprocess.run([RUNNER, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    for opt in ("--tags", "--backend", "--build", "--no-build", "--keep-up", "--report-dir", "--seed",
                "--fail-fast", "--timeout-multiplier", "-- <behave args>", "exit codes"):
        assert opt in out.stdout, opt


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_nothing_behind(docker_engine, tmp_path, sig):
    proc = start_run(tmp_path, "--tags", "@smoke")
    lines = read_until(proc, r"Stack healthy|ERROR", 240)
    run_id = run_id_of(lines)
    assert any(docker_engine.containers.list(filters={"label": f"io.apiary.run={run_id}"})), "stack was not up"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode not in (0, None), out
    assert "Teardown complete" in out, out
    assert leftovers(docker_engine, run_id) == {"containers": [], "networks": [], "volumes": []}


@pytest.mark.docker
def test_selftest_failure_exits_1_with_a_complete_bundle(docker_engine, tmp_path):
    proc = start_run(tmp_path, "--tags", "@selftest", "--", "--include", r"selftest\.failure\.feature")  # its 2 scenarios only
    out, _ = proc.communicate(timeout=280)
    assert proc.returncode == 1, out
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["gate"]["passed"] is False
    assert len(summary["failures"]) == 2, summary["failures"]
    for failure in summary["failures"]:
        bundle = run_dir / failure["bundle"]
        for name in (*BUNDLE_FILES, "events.jsonl", "faults.jsonl", "history.jsonl"):
            assert (bundle / name).is_file(), f"{name} missing from {bundle}"
        assert {p.name for p in (bundle / "logs").iterdir()} >= {"orchestrator.log", "hive-a.log", "worker-b2.log"}
        assert not (bundle / "gather-errors.txt").exists(), (bundle / "gather-errors.txt").read_text()
    tb = [f for f in summary["failures"] if "traceback" in f["scenario"].lower()][0]
    assert "RuntimeError: selftest" in (run_dir / tb["bundle"] / "tracebacks.txt").read_text()
    junit = "".join(p.read_text() for p in (run_dir / "junit").glob("*.xml"))
    assert junit.count('name="bundle"') == 2
    assert "failure bundle" in (run_dir / "report.html").read_text()
    assert leftovers(docker_engine, summary["run_id"]) == {"containers": [], "networks": [], "volumes": []}
