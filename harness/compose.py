"""Which compose to run (v2 — `docker compose` or the project-local binary — before v1) and running
its commands with a deadline."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import ComposeError, EnvironmentSetupError

ROOT = Path(__file__).resolve().parents[1]
LOCAL_COMPOSE_V2 = ROOT / ".tools" / "docker-compose"   # fetched by scripts/get-compose-v2.sh


def compose_command() -> list[str]:
    """$APIARY_COMPOSE when set, else Compose v2 (`docker compose`, or the project-local binary), else
    `docker-compose` (v1); EnvironmentSetupError if there is none."""
    if os.environ.get("APIARY_COMPOSE"):
        return os.environ["APIARY_COMPOSE"].split()
    for cmd in (["docker", "compose"], [str(LOCAL_COMPOSE_V2)]):
        if compose_major(cmd) >= 2:
            return cmd
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EnvironmentSetupError("no compose", "neither `docker compose` nor `docker-compose` is installed")


def compose_major(cmd: list[str]) -> int:
    """Major version of a compose command (0 when it does not run); asked once per command and process."""
    return _major(tuple(cmd))


@functools.lru_cache(maxsize=None)
def _major(cmd: tuple[str, ...]) -> int:
    try:
        proc = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.match(r"v?(\d+)\.", proc.stdout.strip())
    return int(match.group(1)) if proc.returncode == 0 and match else 0


def run_cmd(cmd: list[str], env: dict | None = None, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capture its output; ComposeError(cmd, rc, stdout, stderr) when it fails or times out."""
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(cmd, -1, str(exc.stdout or ""), f"timed out after {timeout_s}s\n{exc.stderr or ''}")
    if check and proc.returncode != 0:
        raise ComposeError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc
