"""The reaper (Ryuk-style): a process of its own session that the runner starts first and holds by a pipe.
When the pipe closes without "keep" (the runner exited, or was killed with -9 mid-scenario), it stops the
run's behave process group and removes what the run left: every container (paused ones included, with the
iptables rules inside them), network and volume labelled with the run, the local backend's processes, and
the run's secrets directory RUN_DIR/secrets (its keys).
Run as `python -m apiary_suite.reaper RUN_ID RUN_DIR`; one JSON line per action goes to RUN_DIR/reaper.log."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SWEEP_DEADLINE_S = 30.0


class Reaper:
    """The runner's handle on its reaper: say which process group to stop, or to keep everything."""

    def __init__(self, run_id: str, run_dir: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "apiary_suite.reaper", run_id, str(run_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, cwd=Path(__file__).resolve().parents[1],
                                     env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))

    def _say(self, line: str) -> None:
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def watch_group(self, pgid: int) -> None:
        """Stop this process group too if the runner dies (behave runs in its own session)."""
        self._say(f"pgid {pgid}")

    def unwatch_group(self, pgid: int) -> None:
        """The group has ended: never signal that id again (it may be reused)."""
        self._say(f"unwatch {pgid}")

    def release(self, keep: bool = False) -> None:
        """The runner is done: with keep (--keep-up), leave everything; else let it sweep what is left."""
        if keep:
            self._say("keep")
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass


def log(run_dir: Path, **entry) -> None:
    with open(run_dir / "reaper.log", "a") as fh:
        fh.write(json.dumps({"ts": round(time.time(), 3), **entry}, default=str) + "\n")


def reap(run_id: str, run_dir: Path, groups: list[int]) -> dict:
    """Stop the watched groups, kill local service processes, delete the run's secrets, sweep the engine
    until nothing is left."""
    for pgid in groups:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                break
    from apiary_suite.local import kill_leftovers
    killed = kill_leftovers(run_dir / "local")
    from apiary_suite.secrets import remove_run_secrets
    secrets_removed = remove_run_secrets(run_dir)   # first: it needs no engine
    left: dict = {}
    try:
        from apiary_suite.cluster import docker_client
        from apiary_suite.stackops import project_name
        from harness.sweep import leftovers, sweep
        client = docker_client(10)
    except Exception as exc:  # noqa: BLE001 - no engine: nothing of ours can be on it
        return {"killed_local": killed, "secrets_removed": secrets_removed, "engine": repr(exc)[:200]}
    deadline = time.monotonic() + SWEEP_DEADLINE_S
    failures: list[str] = []
    while True:
        failures = sweep(client, run_id, project_name(run_id))
        left = leftovers(client, run_id)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {"killed_local": killed, "secrets_removed": secrets_removed, "left": left, "failures": failures}


def main(argv: list[str]) -> int:
    run_id, run_dir = argv[0], Path(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the terminal's Ctrl-C is the runner's to handle
    groups: list[int] = []
    keep = False
    for line in sys.stdin:                           # returns at EOF: the runner closed it or died
        word, _, arg = line.strip().partition(" ")
        if word == "pgid" and arg.isdigit():
            groups.append(int(arg))
        elif word == "unwatch" and arg.isdigit() and int(arg) in groups:
            groups.remove(int(arg))
        elif word == "keep":
            keep = True
    if keep:
        log(run_dir, event="kept", run_id=run_id)
        return 0
    start = time.monotonic()
    result = reap(run_id, run_dir, groups)
    log(run_dir, event="reaped", run_id=run_id, seconds=round(time.monotonic() - start, 2), **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
