"""The four example topologies run end to end with `python -m examples.run`, and the runner's checks work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from examples import run as runner
from examples import spec as specs

pytestmark = pytest.mark.timeout(90)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = ["zeromq_pubsub", "zeromq_pipeline", "zeromq_distributed", "zeromq_hybrid"]


def run_example(path: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the example runner on path and capture its output."""
    return subprocess.run([sys.executable, "-m", "examples.run", path], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_without_loss_or_duplicates(name):
    result = run_example(f"examples/{name}.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: every endpoint received every expected message exactly once" in result.stdout
    spec = specs.load(os.path.join(ROOT, "examples", f"{name}.yaml"))
    for stage in spec["stages"]:
        if stage["kind"] == "sink":
            expected = len(specs.expected_ids(spec, stage))
            assert f"{stage['name']}#0" in result.stdout
            assert f"received {expected}/{expected}: 0 missing, 0 duplicated" in result.stdout


def test_sink_check_names_lost_duplicated_and_reordered_ids(capsys):
    spec = specs.load(os.path.join(ROOT, "examples", "zeromq_pubsub.yaml"))
    audit = next(s for s in spec["stages"] if s["name"] == "audit-log")
    ids = list(range(spec["messages"]))
    lossy = {"ids": [i for i in ids if i not in (7, 8)] + [3], "spread": {}}
    failures = runner.check_sink(spec, audit, "audit-log#0", lossy)
    assert any("lost 2 messages, ids [7, 8]" in f for f in failures)
    assert any("duplicated ids [3]" in f for f in failures)
    swapped = {"ids": [1, 0, *ids[2:]], "spread": {}}
    assert runner.check_sink(spec, audit, "audit-log#0", swapped) == ["audit-log#0: messages arrived out of order"]
    assert "OUT OF ORDER" in capsys.readouterr().out


def test_config_errors_exit_2_naming_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmessages: 10\nendpoints:\n  e: {transport: zeromq, pattern: fan_out, bind: s}\n"
                   "stages:\n  - {name: s, kind: source, output: e}\n")
    result = run_example(str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "'pattern'" in result.stderr and "push_pull" in result.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs SIGINT")
def test_ctrl_c_stops_every_process_the_runner_started(tmp_path):
    text = open(os.path.join(ROOT, "examples", "zeromq_distributed.yaml"), encoding="utf-8").read()
    endless = tmp_path / "endless.yaml"
    endless.write_text(text.replace("messages: 6000", "messages: 20000000"))   # 2 M ran out in 5.6 s on a quiet machine
    # Ctrl-C as a terminal delivers it: SIGINT at its default in the child, whatever this process inherited
    # (a job started in the background of a non-interactive shell has SIGINT ignored, and so would the runner)
    proc = subprocess.Popen([sys.executable, "-m", "examples.run", str(endless)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while len(children := parent.children()) < 5:
            assert time.monotonic() < deadline, "the runner did not start its 5 stage processes within 30 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, out + err
        assert "interrupted" in out
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"stage processes still running after Ctrl-C: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
