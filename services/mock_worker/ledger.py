"""The worker's execution ledger: one JSON line per job-attempt event (start, finish, abort), append-only.

It is evidence that does not come from the orchestrator: a checker reads it (GET /ledger) to see which
job attempts and client nonces each worker really ran to completion.  The file is APIARY_LEDGER_PATH:
in the compose stack /data/ledger.jsonl on the worker's own named volume (the root filesystem is
read-only and /tmp a tmpfs, which a restart empties), in the local backend a run directory; so it
survives a SIGKILL or OOM kill and a restart.  Every line is flushed as it is written.  A write error
is logged once and counted, never raised.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time

log = logging.getLogger("mock-worker")

NONCE_RE = re.compile(r"nonce:([0-9a-zA-Z_-]{6,64})")
EVENTS = ("start", "finish", "abort")


def default_path(worker_id: str) -> str:
    """Return the default ledger path, one file per worker id (several workers may share a machine)."""
    safe = re.sub(r"[^0-9A-Za-z_.-]", "_", worker_id) or "worker"
    return f"/tmp/apiary-ledger-{safe}.jsonl"


def nonce_of(prompt: str) -> str | None:
    """Return the client nonce written as `nonce:<value>` in a prompt (first match), or None."""
    match = NONCE_RE.search(prompt)
    return match.group(1) if match else None


def prompt_sha(prompt: str) -> str:
    """Return the first 16 hex digits of the prompt's SHA-256."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Ledger:
    """Appends entries to one file and reads them back; `errors` counts failed writes."""

    def __init__(self, path: str, worker_id: str, on_error=None):
        self.path = path
        self.worker_id = worker_id
        self.errors = 0
        self.written = 0
        self._on_error = on_error  # called with no argument on each failed write (a metric)
        self._file = None
        self._logged = False

    def record(self, event: str, job_id: str, attempt: int, prompt: str, tokens: int, **extra) -> dict:
        """Append one entry (flushed) and return it; a write error is counted, not raised."""
        entry = {"worker": self.worker_id, "event": event, "job_id": job_id, "attempt": attempt,
                 "nonce": nonce_of(prompt), "prompt_sha": prompt_sha(prompt), "tokens": tokens,
                 "wall": time.time(), "pid": os.getpid(), **extra}
        self.write(entry)
        return entry

    def write(self, entry: dict) -> bool:
        """Write one entry as a line and flush it; False (counted, logged once) when that failed."""
        try:
            if self._file is None:
                parent = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(parent, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()
        except (OSError, ValueError, TypeError) as exc:
            self._failed(exc)
            return False
        self.written += 1
        return True

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error()
        if not self._logged:
            self._logged = True
            log.error("ledger write failed", extra={"event": "ledger_write_failed", "path": self.path,
                                                    "error": repr(exc)})
        if self._file is not None:  # reopen on the next write: the volume may come back
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def read(self, since: float | None = None) -> tuple[list[dict], int]:
        """Return (entries with wall >= since, lines that could not be parsed) from the file."""
        entries: list[dict] = []
        skipped = 0
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        skipped += 1  # a line cut short by a kill in the middle of a write
                        continue
                    if not isinstance(entry, dict):
                        skipped += 1
                        continue
                    if since is None or (isinstance(entry.get("wall"), (int, float)) and entry["wall"] >= since):
                        entries.append(entry)
        except (FileNotFoundError, NotADirectoryError):
            pass  # nothing was ever written (write_errors tells whether something should have been)
        return entries, skipped

    def close(self) -> None:
        """Close the file (entries are already flushed)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
