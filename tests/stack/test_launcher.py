"""The one local launcher's process handling without the services: a stand-in interpreter (a shell that
starts a child in its process group and waits, like a worker and its engine) shows that stop/terminate/restart
end whole groups, pause freezes the group, and kill_leftovers ends the recorded groups of a launcher that
never stopped."""
from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from harness.wait import wait_until
from services.stack import STATE_FILE, LocalStack, kill_leftovers


@pytest.fixture
def fake_python(tmp_path):
    """An 'interpreter' that ignores `-m module`, starts a sleeping child in its group and waits for it; with
    FAKE_DEAF set it ignores SIGTERM (so only the grace period's SIGKILL ends it)."""
    path = tmp_path / "fake-python"
    path.write_text('#!/bin/sh\n[ -n "$FAKE_DEAF" ] && trap "" TERM\nsleep 60 &\nwait\n')
    path.chmod(0o755)
    return str(path)


def group_members(pgid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def wait_group(pgid: int, want: int, timeout_s: float = 5.0) -> list[psutil.Process]:
    """The group's members once it has `want` live (non-zombie) ones; AssertionError naming what was seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        members = [p for p in group_members(pgid) if _status(p) not in ("zombie", None)]
        if len(members) == want:
            return members
        if time.monotonic() > deadline:
            raise AssertionError(f"process group {pgid}: {len(members)} live members, wanted {want}: {members}")
        time.sleep(0.02)


def wait_states(pgid: int, ok, what: str, timeout_s: float = 5.0) -> None:
    """Wait until the group's two live members' states satisfy `ok`; WaitTimeout naming what was seen."""
    def check() -> bool:
        states = {_status(p) for p in wait_group(pgid, 2)}
        assert ok(states), f"states {states}"
        return True
    wait_until(check, timeout_s, err_msg=f"process group {pgid}: not {what}", scale=False)


def _status(p: psutil.Process) -> str | None:
    try:
        return p.status()
    except psutil.Error:
        return None


def test_stop_ends_every_group_and_terminate_restart_end_one(tmp_path, fake_python):
    stack = LocalStack(hives=1, workers_per_hive=1, workdir=tmp_path / "w", python=fake_python, curve=False,
                       worker_env={"FAKE_DEAF": "1"})
    for name in stack.names:
        stack.spawn(name)
    try:
        groups = {n: stack.pid(n) for n in stack.names}
        for pgid in groups.values():
            wait_group(pgid, 2)                      # the shell and its sleeping child
        recorded = json.loads((tmp_path / "w" / STATE_FILE).read_text())
        assert recorded["pids"] == groups and recorded["ports"] == stack.ports

        t = stack.pause("worker-a1")
        assert t <= time.monotonic()
        wait_states(groups["worker-a1"], lambda states: states == {psutil.STATUS_STOPPED}, "every member stopped")
        stack.resume("worker-a1")
        wait_states(groups["worker-a1"], lambda states: psutil.STATUS_STOPPED not in states, "no member stopped")

        old = groups["hive-a"]
        stack.restart("hive-a", wait=False)
        wait_group(old, 0)                           # the old shell and its child are gone
        assert stack.pid("hive-a") != old
        wait_group(stack.pid("hive-a"), 2)

        t0 = time.monotonic()
        assert stack.terminate("worker-a1", grace=0.3), "a worker deaf to SIGTERM was not reported as killed"
        assert time.monotonic() - t0 >= 0.3, "SIGKILL came before the grace period ended"
        wait_group(groups["worker-a1"], 0)
    finally:
        killed = stack.stop(grace=2)
    assert killed == [], "the orchestrator and the hive exit on SIGTERM: none needed the SIGKILL"
    for name in stack.names:                         # yet their children (the engines) are gone with the group
        wait_group(stack.pid(name), 0)


def test_kill_leftovers_ends_the_recorded_groups_of_a_launcher_that_never_stopped(tmp_path, fake_python):
    stack = LocalStack(hives=1, workers_per_hive=1, workdir=tmp_path, python=fake_python, curve=False)
    for name in stack.names:
        stack.spawn(name)
    pgids = [stack.pid(n) for n in stack.names]
    for pgid in pgids:
        wait_group(pgid, 2)
    stack.pause("hive-a")                            # a paused group is ended too
    assert sorted(kill_leftovers(tmp_path)) == sorted(pgids)
    for pgid in pgids:
        wait_group(pgid, 0)
    for proc in stack.procs.values():
        assert proc.wait(5) == -signal.SIGKILL
    assert kill_leftovers(tmp_path) == [], "nothing is left to kill"


def test_kill_takes_a_signal_name_and_refuses_an_unknown_one(tmp_path, fake_python):
    stack = LocalStack(hives=1, workers_per_hive=1, workdir=tmp_path, python=fake_python, curve=False)
    stack.spawn("worker-a1")
    try:
        with pytest.raises(KeyError, match="SIGNOPE"):
            stack.kill("worker-a1", "SIGNOPE")
        stack.kill("worker-a1", "SIGKILL")
        assert stack.procs["worker-a1"].wait(5) == -signal.SIGKILL
    finally:
        stack.stop(grace=0.3)
