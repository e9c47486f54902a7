"""A progress bar on stderr: redrawn in place on a terminal, a line per tenth of the run otherwise."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """done/total, ok and failed counts, rate and elapsed time; thread-safe."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, enabled: bool = True, width: int = 30):
        self.total, self.stream, self.enabled, self.width = total, stream, enabled, width
        self.tty = enabled and stream.isatty()
        self.done = self.failed = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._next_tenth = 1
        self._lock = threading.Lock()

    def update(self, ok: bool) -> None:
        """Count one finished request and redraw when due."""
        with self._lock:
            self.done += 1
            self.failed += 0 if ok else 1
            if not self.enabled:
                return
            now = time.perf_counter()
            if self.tty and (now - self._last_draw >= 0.1 or self.done == self.total):
                self._last_draw = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
            elif not self.tty and self.done * 10 >= self._next_tenth * self.total:
                self._next_tenth = self.done * 10 // self.total + 1
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self) -> str:
        """`[#####-----] 50/100 ok 49 failed 1 41.0 req/s 1.2 s`."""
        elapsed = time.perf_counter() - self.started
        filled = self.width * self.done // self.total if self.total else self.width
        return (f"[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} ok {self.done - self.failed} "
                f"failed {self.failed} {self.done / elapsed if elapsed > 0 else 0:.1f} req/s {elapsed:.1f} s")

    def close(self) -> None:
        """End the in-place line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
