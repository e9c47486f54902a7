"""behave formatter for live progress: `[n/N]` with the run's elapsed time, an ETA and the scenario
running now when it starts, then one line with its status and elapsed time (printed once the
scenario's after-hooks ran, so a traceback found there shows as a failure). N comes from the
runner's selection (APIARY_PROGRESS_TOTAL); without it the lines show `[n]`."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from behave.formatter.base import Formatter

LABELS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "hook_error": "FAIL(hook)", "skipped": "SKIP",
          "undefined": "UNDEFINED", "untested": "UNTESTED", "cleanup_error": "ERROR"}


def clock(seconds: float) -> str:
    """12:34 or 1:02:03."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def eta(done: int, total: int, spent_s: float) -> str:
    """Time left from the mean of the finished scenarios ('?' before the first one finished)."""
    if not total or done <= 0:
        return "?"
    return clock(spent_s / done * max(0, total - done))


def counter(n: int, total: int) -> str:
    return f"[{n:>{len(str(total))}}/{total}]" if total else f"[{n:>3}]"


class ProgressFormatter(Formatter):
    """Prints `[n/N] STATUS  elapsed  feature › scenario` lines to stdout, flushing each one."""

    name = "apiary-progress"
    description = "One line per scenario: status and elapsed time"

    def __init__(self, stream_opener, config):
        super().__init__(stream_opener, config)
        self.stream = self.open()
        self.current = None
        self.started = 0.0
        self.count = 0
        self.feature_name = ""
        self.run_started = time.monotonic()
        self.spent = 0.0             # wall time of the finished scenarios (for the ETA)
        try:
            self.total = int(os.environ.get("APIARY_PROGRESS_TOTAL") or 0)
        except ValueError:
            self.total = 0

    def feature(self, feature):
        self.finish_scenario()
        self.feature_name = feature.name

    def scenario(self, scenario):
        self.finish_scenario()
        self.current = scenario
        self.started = time.monotonic()
        total = max(self.total, self.count + 1) if self.total else 0
        self.stream.write(f"{counter(self.count + 1, total)} RUN        {self.feature_name} › {scenario.name}"
                          f"  (elapsed {clock(self.started - self.run_started)}, "
                          f"ETA {eta(self.count, total, self.spent)})\n")
        self.stream.flush()

    def finish_scenario(self) -> None:
        """Print the line of the scenario that just ended (if any)."""
        if self.current is None:
            return
        scenario, self.current = self.current, None
        self.count += 1
        status = scenario.status.name
        label = LABELS.get(status, status.upper())
        elapsed = time.monotonic() - self.started
        self.spent += elapsed
        total = max(self.total, self.count) if self.total else 0
        line = f"{counter(self.count, total)} {label:<10} {elapsed:6.2f}s  {self.feature_name} › {scenario.name}"
        if status == "skipped" and getattr(scenario, "skip_reason", None):
            line += f"  ({scenario.skip_reason})"
        if status in ("failed", "error", "hook_error"):
            step = next((s for s in scenario.all_steps if s.status.name in ("failed", "error", "undefined")), None)
            msg = (step.error_message if step else getattr(scenario, "error_message", "")) or ""
            lines = [ln for ln in str(msg).splitlines() if ln.strip()]
            first = (lines[-1] if lines and lines[0].startswith("Traceback") else lines[0]) if lines else ""
            where = f"{step.keyword} {step.name}: " if step else ""
            line += f"\n        {where}{first[:200]}"
        self.stream.write(line + "\n")
        self.stream.flush()
        run_dir = os.environ.get("APIARY_REPORT_DIR")
        if run_dir and Path(run_dir).is_dir():   # wall time incl. hooks (reset, world, bundle) for summary.json
            with open(Path(run_dir) / "elapsed.jsonl", "a") as fh:
                fh.write(json.dumps({"feature": self.feature_name, "scenario": scenario.name,
                                     "elapsed_s": round(elapsed, 3), "status": status}) + "\n")
        sys.stdout.flush()

    def eof(self):
        self.finish_scenario()

    def close(self):
        self.finish_scenario()
        self.close_stream()
