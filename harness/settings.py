"""What the runner tells the behave process (APIARY_* environment variables) and the checkout's revision;
imported by the behave hooks, which never import the runner's CLI (tests/kit/test_import_contract.py)."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Settings:
    """What the behave process needs to know about the run (passed through APIARY_* env vars)."""

    run_id: str
    report_dir: str               # the run's directory: reports/<run-id>
    seed: int = 0
    timeout_multiplier: float = 1.0
    backend: str = "docker"
    keep_up: bool = False
    stack_file: str = ""
    gate_file: str = ""
    compose_file: str = ""        # --compose: another stack's compose file (APIARY_COMPOSE_FILE, harness/stack)

    def to_env(self) -> dict[str, str]:
        return {f"APIARY_{k.upper()}": str(int(v) if isinstance(v, bool) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        run_id = env.get("APIARY_RUN_ID") or time.strftime("manual-%Y%m%d-%H%M%S")
        report_dir = env.get("APIARY_REPORT_DIR") or str(ROOT / "reports" / run_id)
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        return cls(run_id=run_id, report_dir=report_dir, seed=int(env.get("APIARY_SEED", "0") or 0),
                   timeout_multiplier=float(env.get("APIARY_TIMEOUT_MULTIPLIER", "1") or 1),
                   backend=env.get("APIARY_BACKEND", "docker"), keep_up=env.get("APIARY_KEEP_UP", "0") == "1",
                   stack_file=env.get("APIARY_STACK_FILE", ""), gate_file=env.get("APIARY_GATE_FILE", ""),
                   compose_file=env.get("APIARY_COMPOSE_FILE", ""))


def git_revision() -> str:
    """HEAD's commit, with -dirty when tracked files changed; "unknown" outside a git checkout."""
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if proc.returncode == 0 else "unknown"
