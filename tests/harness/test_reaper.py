"""The reaper: a runner killed with -9 mid-scenario, with a container paused and an iptables rule in
another, leaves nothing behind within 10 s (containers, networks, volumes, behave); and the reaper keeps
everything when told to (--keep-up). Skipped without an engine."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from apiary_suite.cluster import Cluster
from harness.nemesis.protocol import lookup
from harness.sweep import leftovers
from tests.harness.test_runner_docker import read_until, run_id_of, start_run

ROOT = Path(__file__).resolve().parents[2]


def behave_of(run_id):
    """Processes of the run's behave (it runs in a session of its own)."""
    return [p for p in psutil.process_iter(["cmdline", "environ"])
            if "behave" in " ".join(p.info["cmdline"] or []) and (p.info["environ"] or {}).get("APIARY_RUN_ID") == run_id]


@pytest.mark.docker
def test_a_runner_killed_with_9_mid_scenario_leaves_nothing_within_10_s(docker_engine, stack_images, tmp_path):
    proc = start_run(tmp_path, "--no-build", "--tags", "@integration", "--", "-i", "fullstack.concurrency")
    lines = read_until(proc, r"Stack healthy|ERROR", 240)
    run_id = run_id_of(lines)
    run_dir = tmp_path / run_id
    cluster = Cluster.attach(json.loads((run_dir / "stack.json").read_text()))
    lookup("pause").apply(cluster, "worker-b2")                                   # faults the run never heals
    lookup("partition").apply(cluster, "orchestrator|hive-b", direction="orchestrator->hive-b")   # an iptables rule
    deadline = time.monotonic() + 60
    while not behave_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert behave_of(run_id), "behave never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 10:
        if not any(leftovers(docker_engine, run_id).values()) and not behave_of(run_id):
            break
        time.sleep(0.2)
    took = time.monotonic() - killed_at
    assert not any((left := leftovers(docker_engine, run_id)).values()), f"left after {took:.1f}s: {left}"
    assert not behave_of(run_id), "behave outlived the runner"
    assert took <= 10, took
    entry = json.loads((run_dir / "reaper.log").read_text().splitlines()[-1])
    assert entry["event"] == "reaped" and entry["run_id"] == run_id


def test_the_reaper_keeps_everything_when_told_and_sweeps_when_its_runner_vanishes(tmp_path):
    from apiary_suite.reaper import Reaper
    kept = Reaper("reaper-keep", tmp_path)
    kept.release(keep=True)
    assert kept.proc.wait(10) == 0
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    gone = Reaper("reaper-gone", tmp_path)
    gone.watch_group(sleeper.pid)
    gone.proc.stdin.close()           # what the kernel does when the runner dies
    assert gone.proc.wait(40) == 0 and sleeper.wait(5) == -signal.SIGKILL
    events = [json.loads(line) for line in (tmp_path / "reaper.log").read_text().splitlines()]
    assert [(e["event"], e["run_id"]) for e in events] == [("kept", "reaper-keep"), ("reaped", "reaper-gone")]
