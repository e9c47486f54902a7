"""Jepsen-style operation history: every client request and every nemesis fault as one op shape, kept as JSON lines.

An op is a dict: index, process, type (invoke|ok|fail|info), f, value, job_id, time (s since the
history began, monotonic), wall (epoch s), latency (s, on completions) plus free extra fields.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterable

OP_TYPES = ("invoke", "ok", "fail", "info")


class History:
    """A thread-safe, append-only list of ops; `invoke` then `complete` pairs a request with its outcome."""

    def __init__(self, ops: Iterable[dict] | None = None):
        self._lock = threading.Lock()
        self._ops: list[dict] = []
        self._t0 = time.monotonic()
        for op in ops or ():
            self._ops.append(dict(op))

    def _append(self, op: dict) -> dict:
        with self._lock:
            op["index"] = len(self._ops)
            self._ops.append(op)
        return op

    def invoke(self, process: Any, f: str, value: Any = None, **extra: Any) -> dict:
        """Record the start of an operation and return it (pass it to `complete`)."""
        now = time.monotonic()
        op = {"process": process, "type": "invoke", "f": f, "value": value, "job_id": None,
              "time": round(now - self._t0, 6), "wall": time.time(), **extra}
        op["_mono"] = now
        return self._append(op)

    def complete(self, invoke_op: dict, type_: str, value: Any = None, job_id: str | None = None,
                 **extra: Any) -> dict:
        """Record the outcome (`ok`, `fail` or `info`) of an invoked op and return it."""
        if type_ not in OP_TYPES[1:]:
            raise ValueError(f"completion type must be ok, fail or info, not {type_!r}")
        now = time.monotonic()
        op = {"process": invoke_op["process"], "type": type_, "f": invoke_op["f"], "value": value,
              "job_id": job_id, "time": round(now - self._t0, 6), "wall": time.time(),
              "latency": round(now - invoke_op.get("_mono", now), 6), "invoke_index": invoke_op["index"],
              **extra}
        return self._append(op)

    def record(self, process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict:
        """Record a single op with no invoke (e.g. an observation)."""
        now = time.monotonic()
        op = {"process": process, "type": type_, "f": f, "value": value, "job_id": extra.pop("job_id", None),
              "time": round(now - self._t0, 6), "wall": time.time(), **extra}
        return self._append(op)

    @property
    def ops(self) -> list[dict]:
        """Return a copy of every op so far (internal keys stripped)."""
        with self._lock:
            return [{k: v for k, v in op.items() if not k.startswith("_")} for op in self._ops]

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def to_jsonl(self) -> str:
        """Return the history as JSON lines (one op per line)."""
        return "".join(json.dumps(op, default=str, sort_keys=True) + "\n" for op in self.ops)

    @classmethod
    def from_jsonl(cls, text: str) -> "History":
        """Parse JSON lines written by `to_jsonl`."""
        return cls(json.loads(line) for line in text.splitlines() if line.strip())


def as_ops(history: "History | Iterable[dict]") -> list[dict]:
    """Return the op list of a History or pass a list of ops through."""
    return history.ops if isinstance(history, History) else list(history)


def pairs(history: "History | Iterable[dict]") -> list[tuple[dict, dict | None]]:
    """Pair each invoke with its completion (None when it never completed)."""
    ops = as_ops(history)
    done = {op["invoke_index"]: op for op in ops if op.get("type") != "invoke" and "invoke_index" in op}
    return [(op, done.get(op["index"])) for op in ops if op.get("type") == "invoke"]


def completions(history: "History | Iterable[dict]", f: str | Iterable[str] | None = None,
                type_: str | None = None) -> list[dict]:
    """Return the completion ops (ok/fail/info), optionally filtered by f and type."""
    fs = {f} if isinstance(f, str) else (set(f) if f is not None else None)
    return [op for op in as_ops(history) if op.get("type") != "invoke" and "invoke_index" in op
            and (fs is None or op.get("f") in fs) and (type_ is None or op.get("type") == type_)]
