"""The run limit: a behave phase that outlives --max-minutes is stopped, fails the gate, and leaves no process."""
import json
import subprocess
from pathlib import Path

import pytest

from apiary_suite.local import kill_leftovers

# Runs the runner over local processes: never beside another such file under xdist (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("runner-local")

ROOT = Path(__file__).resolve().parents[2]


def test_suite_past_its_run_limit_exits_1_with_the_reason_in_the_summary(tmp_path):
    """--max-minutes 0.1 (6 s) over the ~40 s local @integration run: exit 1, the gate names the limit, nothing left."""
    out = subprocess.run([str(ROOT / "run-integration-tests.sh"), "--backend", "local", "--tags", "@integration",
                          "--max-minutes", "0.1", "--report-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "behave did not finish within 0.1 min" in out.stdout, out.stdout[-3000:]
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_code"] == 1 and not summary["gate"]["passed"]
    assert any("did not finish within 0.1 min" in r for r in summary["gate"]["reasons"]), summary["gate"]
    assert kill_leftovers(run_dir / "local") == [], "local service processes outlived the run"
