"""--help and --list through ./run-integration-tests.sh on a machine without the venv: nothing is
installed or created, --list still lists (stdlib scan, or behave if the system python has it)."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def script(tmp_path, *args):
    """The script with a venv path that does not exist and no .venv on PATH (the real .venv is untouched)."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=path, APIARY_VENV=str(tmp_path / "no-venv"))
    proc = subprocess.run([str(ROOT / "run-integration-tests.sh"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert not (tmp_path / "no-venv").exists(), "an info command created a venv"
    return proc


def test_help_prints_without_a_venv_and_documents_exit_4(tmp_path):
    proc = script(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: run-integration-tests.sh [FEATURE[:LINE]]")
    assert "4 usage error" in proc.stdout and "--junit-xml" in proc.stdout and "[setup]" not in proc.stderr


def test_list_works_without_a_venv_and_starts_nothing(tmp_path):
    reports_before = sorted(p.name for p in (ROOT / "reports").iterdir()) if (ROOT / "reports").is_dir() else []
    proc = script(tmp_path, "--list", "--tags", "@smoke", "-k", "Malformed")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("features/validation.requests.feature:9 ") and "@smoke" in lines[0]
    assert lines[-1].startswith("1 scenario(s) in 1 feature file(s) selected (parsed with ")
    assert not list(tmp_path.glob("reports*"))
    reports_after = sorted(p.name for p in (ROOT / "reports").iterdir()) if (ROOT / "reports").is_dir() else []
    assert [n for n in reports_after if n not in reports_before and n.startswith("20")] == [], "a run dir was made"


@pytest.mark.parametrize("argv", [["--list", "features/no-such.feature"], ["--list", "--no-such-option"]])
def test_usage_errors_exit_4_without_a_venv(tmp_path, argv):
    proc = script(tmp_path, *argv)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "error" in proc.stderr


def test_an_unexpected_runner_error_exits_2_with_a_summary_and_a_page_naming_it(tmp_path, monkeypatch):
    import json
    from harness import runner

    def broken(args, meta):
        raise RuntimeError("backend probe exploded")
    monkeypatch.setattr(runner, "choose_backend", broken)
    code = runner.main(["--tags", "@smoke", "--report-dir", str(tmp_path), "--no-build"])
    run_dir = (tmp_path / "latest").resolve()
    assert code == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["environment_error"] == "runner failed" and "backend probe exploded" in summary["detail"]
    assert "backend probe exploded" in (run_dir / "index.html").read_text()


def test_an_in_process_run_gives_the_caller_its_signal_dispositions_back(tmp_path, monkeypatch):
    """runner.main ignores SIGINT/SIGTERM while it tears down; a caller's own handlers are back afterwards
    (a leaked SIG_IGN is inherited by every process the caller starts later: a shell then outlives SIGTERM)."""
    import signal
    from harness import runner

    def mine(signum, frame):
        raise AssertionError("not expected to run")

    def broken(args, meta):
        raise RuntimeError("backend probe exploded")
    monkeypatch.setattr(runner, "choose_backend", broken)
    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert runner.main(["--tags", "@smoke", "--report-dir", str(tmp_path), "--no-build"]) == 2
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
