"""Harness error types: every failure of the environment names what went wrong."""
from __future__ import annotations


class HarnessError(Exception):
    """Base class for errors raised by the harness itself (not by a scenario's assertions)."""


class EnvironmentSetupError(HarnessError):
    """The environment could not be set up (no engine, build failed, unhealthy service): exit code 2."""

    def __init__(self, what: str, detail: str = ""):
        self.what = what
        self.detail = detail
        super().__init__(f"{what}: {detail}" if detail else what)


class ComposeError(HarnessError):
    """A compose (or docker) command failed; carries the command, its exit code and its output."""

    def __init__(self, cmd: list[str] | str, rc: int, stdout: str = "", stderr: str = ""):
        self.cmd = cmd if isinstance(cmd, str) else " ".join(cmd)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout or "").strip().splitlines()[-15:]
        super().__init__(f"`{self.cmd}` exited {rc}" + ("\n  " + "\n  ".join(tail) if tail else ""))


class NemesisError(HarnessError):
    """A fault could not be injected or healed (or the backend cannot inject it)."""
