"""Audit log of nemesis faults: the same op shape as client ops (History), written to faults.jsonl."""
from __future__ import annotations

from typing import Any, Callable

from harness.history import History


class FaultLog:
    """Wraps a History; `run(f, value, fn)` records invoke, then ok (fn's result) or fail (its error)."""

    def __init__(self, history: History | None = None, process: str = "nemesis"):
        self.history = history or History()
        self.process = process

    def run(self, f: str, value: Any, fn: Callable[[], Any]) -> Any:
        op = self.history.invoke(self.process, f, value)
        try:
            result = fn()
        except Exception as exc:  # recorded, then re-raised for the step to fail with it
            self.history.complete(op, "fail", {"target": value, "error": repr(exc)})
            raise
        self.history.complete(op, "ok", {"target": value, "result": result if _jsonable(result) else repr(result)})
        return result

    def note(self, f: str, value: Any) -> None:
        """Record an info op (e.g. a skipped, already-applied fault)."""
        self.history.record(self.process, "info", f, value)

    @property
    def ops(self) -> list[dict]:
        return self.history.ops

    def to_jsonl(self) -> str:
        return self.history.to_jsonl()


def _jsonable(x: Any) -> bool:
    return x is None or isinstance(x, (str, int, float, bool, list, dict))
