"""Sharded runs end to end on real engines: --shards over this engine and a second one the test starts
(images shipped, one merged gate, nothing left on either), an engine killed mid-run (its scenarios are
errors naming it), and a CI matrix (--shard i/N twice at once, then merge-reports; a missing part fails)."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import engines, local_engine
from harness.sweep import leftovers

ROOT = Path(__file__).resolve().parents[2]
RUNNER = str(ROOT / "run-integration-tests.sh")
# three quick @smoke scenarios (3-6 s each): enough for two shards, cheap enough for the test command
PICK = ["--tags", "@smoke", "-k", "Malformed JSON|non-streamed completion returns|missing or wrong key"]
CLEAN = {"containers": [], "networks": [], "volumes": []}
pytestmark = pytest.mark.docker


def start(tmp_path, *args, env=None):
    """Start the runner (images already built: --no-build) with its own report dir."""
    return subprocess.Popen([RUNNER, "--report-dir", str(tmp_path), "--no-build", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})


def finish(proc, timeout_s=420):
    """The runner's exit code and output; a run past timeout_s is interrupted and the test fails."""
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        pytest.fail(f"the run did not finish within {timeout_s}s:\n{out[-3000:]}")
    return proc.returncode, out


def summary_of(report_dir: Path) -> dict:
    return json.loads(((report_dir / "latest").resolve() / "summary.json").read_text())


def started_on(client, run_id: str, since: float) -> set[str]:
    """Compose services whose container the engine itself reports started for the run (its event log)."""
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "start", "label": f"io.apiary.run={run_id}"})
    return {e["Actor"]["Attributes"].get("com.docker.compose.service", "?") for e in events}


def test_two_shards_over_two_engines_ship_images_merge_one_gate_and_leave_nothing(docker_engine, stack_images,
                                                                                tmp_path):
    with local_engine.LocalEngine() as second:
        began = time.time()
        code, out = finish(start(tmp_path, *PICK, "--shards", "2", "--docker-host", "default",
                                 "--docker-host", second.url))
        assert code == 0, out[-4000:]
        summary = summary_of(tmp_path)
        assert summary["totals"] == {"total": 3, "passed": 3, "failed": 0, "skipped": 0}, summary["totals"]
        assert sorted(s["engine"] for s in summary["shards"]) == sorted(["default", second.url])
        shipped = summary["shipping"][second.url]
        refs = {f"{name}:{os.environ.get('APIARY_IMAGE_TAG', 'local')}": i for name, i in stack_images.items()}
        assert set(refs) <= set(shipped), shipped
        assert engines.missing_images(second.url, refs) == [], "the second engine lacks an image after it"
        runs = {r["engine"]: r["run_id"] for r in summary["shard_runs"]}
        assert "orchestrator" in started_on(second.client(), runs[second.url], began), \
            "the second engine never started the shard's orchestrator: the shard did not run there"
        assert "orchestrator" not in started_on(docker_engine, runs[second.url], began)
        assert leftovers(docker_engine, runs["default"]) == CLEAN
        assert engines.leftovers_on(second.url, runs[second.url]) == CLEAN


def test_an_engine_killed_mid_run_fails_the_gate_naming_it_and_the_other_engine_is_left_clean(docker_engine,
                                                                                          stack_images, tmp_path):
    with local_engine.LocalEngine() as second:
        proc = start(tmp_path, *PICK, "--shards", "2", "--docker-host", "default", "--docker-host", second.url)
        lines, deadline = [], time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if re.match(r"\[shard 2/2\] Stack healthy", line):
                os.kill(second.pid, signal.SIGKILL)
                break
        else:
            pytest.fail("shard 2's stack never came up:\n" + "".join(lines)[-3000:])
        assert engines.alive(second.url) is False
        code, out = finish(proc)
        out = "".join(lines) + out
        assert code != 0, out[-4000:]
        summary = summary_of(tmp_path)
        assert summary["gate"]["passed"] is False
        assert any(second.url in r for r in summary["gate"]["reasons"]), summary["gate"]["reasons"]
        runs = {r["engine"]: r["run_id"] for r in summary["shard_runs"]}
        theirs = [s for s in summary["scenarios"] if s.get("shard") == 2]
        assert theirs and all(s["status"] not in ("passed", "skipped") for s in theirs), theirs
        assert leftovers(docker_engine, runs["default"]) == CLEAN
    assert not Path(second.dir or "/nonexistent").exists()


def test_matrix_parts_run_at_once_merge_into_one_gate_and_a_missing_part_fails_it(docker_engine, stack_images,
                                                                                 tmp_path):
    parts = [start(tmp_path / f"part{i}", *PICK, "--shard", f"{i}/2") for i in (1, 2)]
    results = [finish(p) for p in parts]
    for code, out in results:
        assert code == 0, out[-4000:]
    dirs = [str((tmp_path / f"part{i}" / "latest").resolve()) for i in (1, 2)]
    names = [{s["scenario"] for s in json.loads(Path(d, "summary.json").read_text())["scenarios"]} for d in dirs]
    assert names[0] and names[1] and not names[0] & names[1], names
    merged = subprocess.run([RUNNER, "merge-reports", *dirs, "--out", str(tmp_path / "merged")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert summary["totals"]["passed"] == 3 and (tmp_path / "merged" / "index.html").is_file()
    alone = subprocess.run([RUNNER, "merge-reports", dirs[0], "--out", str(tmp_path / "alone")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "shard 2/2 missing" in alone.stdout, alone.stdout
    for d in dirs:
        assert leftovers(docker_engine, json.loads(Path(d, "summary.json").read_text())["run_id"]) == CLEAN
