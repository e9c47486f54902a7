"""Phase deadlines: the scenario watchdog interrupts a blocked step, the run limit stops a whole process group."""
import socket
import subprocess
import sys
import time

import pytest

from harness.deadline import ScenarioTimeout, ScenarioWatchdog, wait_with_deadline


def test_watchdog_interrupts_a_step_blocked_in_a_socket_read_and_writes_stacks(tmp_path):
    """A recv() that would block forever ends with ScenarioTimeout naming the scenario and the stacks file."""
    dog = ScenarioWatchdog(0.3, tmp_path / "stacks")
    a, b = socket.socketpair()
    try:
        dog.arm("reads forever")
        with pytest.raises(ScenarioTimeout) as exc:
            a.recv(1)   # nothing is ever sent
    finally:
        dog.disarm()
        a.close()
        b.close()
    assert "'reads forever' did not finish within 0.3s" in str(exc.value)
    dumps = list((tmp_path / "stacks").glob("stacks-*.txt"))
    assert len(dumps) == 1
    text = dumps[0].read_text()
    assert "reads forever" in text and "test_deadline.py" in text, text[:2000]


def test_disarmed_watchdog_does_not_fire(tmp_path):
    """disarm() before the limit: the step finishes normally and no stacks are written."""
    dog = ScenarioWatchdog(0.2, tmp_path / "stacks")
    dog.arm("quick")
    dog.disarm()
    time.sleep(0.4)
    assert not (tmp_path / "stacks").exists()


def test_rearming_replaces_the_previous_clock(tmp_path):
    """arm() for the next scenario restarts the limit instead of inheriting the old one."""
    dog = ScenarioWatchdog(0.5, tmp_path / "stacks")
    try:
        dog.arm("first")
        time.sleep(0.3)
        dog.arm("second")
        time.sleep(0.3)   # 0.6 s since the first arm, 0.3 s since the second
    finally:
        dog.disarm()
    assert not (tmp_path / "stacks").exists()


def test_run_limit_stops_the_whole_process_group():
    """A child that ignores nothing but never ends, with a grandchild, is stopped within limit + grace."""
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    start = time.monotonic()
    rc, overran = wait_with_deadline(proc, 0.5, grace_s=2)
    assert overran and rc != 0
    assert time.monotonic() - start < 10
    deadline = time.monotonic() + 5
    while (alive := live_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"processes of the group still alive: {alive}"


def live_members(pgid: int) -> list[str]:
    """Processes of group `pgid` that are not zombies (an orphan's zombie waits for PID 1 to reap it)."""
    out = subprocess.run(["ps", "-e", "-o", "pgid=,pid=,stat="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[0] == str(pgid) and not line.split()[2].startswith("Z")]


def test_run_limit_escalates_to_sigkill_when_sigint_is_ignored():
    """A child that ignores SIGINT is killed after the grace period."""
    script = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    time.sleep(0.3)   # let it install the handler
    rc, overran = wait_with_deadline(proc, 0.2, grace_s=0.5)
    assert overran and rc == -9


def test_process_finishing_in_time_reports_its_exit_code():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    assert wait_with_deadline(proc, 10) == (3, False)
