"""Deadlines for whole phases: a per-scenario watchdog inside behave and a run-wide limit in the runner.

Every wait in the steps already has its own deadline; these are the backstop for a wait that has
none (a library call stuck on a dead socket, a hook that never returns). A scenario that outlives
its limit fails with the stacks of every thread written next to the report, and a behave process
that outlives the run limit is interrupted, then killed, so a release gate never hangs its CI job.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCENARIO_LIMIT_S = 300.0     # the slowest scenario takes ~30 s on a 2-core machine
RUN_LIMIT_S = 45 * 60.0      # the full @integration suite takes ~4 min; CI allows 90 min for everything
GRACE_S = 30.0               # SIGINT to SIGKILL: behave's after-hooks get this long to write bundles


class ScenarioTimeout(AssertionError):
    """A scenario ran past its limit (raised in behave's main thread by SIGALRM)."""


class ScenarioWatchdog:
    """SIGALRM-based limit for one scenario at a time; stacks go to `dump_dir` when it fires."""

    def __init__(self, limit_s: float, dump_dir: Path):
        self.limit_s, self.dump_dir = limit_s, Path(dump_dir)
        self.scenario = ""

    def arm(self, scenario_name: str) -> None:
        """Start the clock for `scenario_name` (replaces any clock still running)."""
        self.scenario = scenario_name
        signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.limit_s)

    def disarm(self) -> None:
        """Stop the clock (idempotent)."""
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _fire(self, _signum, _frame) -> None:
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        path = self.dump_dir / f"stacks-{int(time.time())}.txt"
        with open(path, "w") as fh:
            fh.write(f"scenario {self.scenario!r} exceeded {self.limit_s:g}s; stacks of every thread:\n")
            fh.flush()
            faulthandler.dump_traceback(fh, all_threads=True)
        print(f"scenario {self.scenario!r} exceeded {self.limit_s:g}s; stacks of every thread:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        raise ScenarioTimeout(f"scenario {self.scenario!r} did not finish within {self.limit_s:g}s "
                              f"(the step in progress was interrupted; thread stacks in {path})")


def wait_with_deadline(proc: subprocess.Popen, limit_s: float, grace_s: float = GRACE_S) -> tuple[int, bool]:
    """Wait for `proc` (its own process group); past `limit_s` SIGINT it, then SIGKILL. Returns (rc, overran)."""
    try:
        return proc.wait(limit_s), False
    except subprocess.TimeoutExpired:
        return stop_group(proc, grace_s), True


def stop_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> int:
    """SIGINT `proc`'s process group, SIGKILL it after `grace_s`; returns the exit code."""
    _signal_group(proc, signal.SIGINT)
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        return proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
