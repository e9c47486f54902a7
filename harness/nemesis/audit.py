"""The scenario's fault records, all in one History (the world's faults.jsonl):
- FaultLog: `run(f, value, fn)` records a verb of the process nemesis (kill, pause, PUT /faults...) as
  invoke then ok/fail, the same op shape as client ops;
- FaultBook: the faults a scenario applies through the fault protocol (registry kinds). Each is recorded
  as FaultPlayer records a schedule item: invoke f="start" {kind, target, params, index}, completed ok
  {verified, evidence, error, apply_ms, verify_ms} once verify() has run (fail {error} when apply
  raised); its heal as invoke f="stop" {kind, target, index}, then ok or fail {unhealed}. verify() runs
  in the background by default, so a step's own time limit (e.g. "hive.lost within 1 s") still counts
  from the apply; a heal waits for the fault's verify first, so verify always sees the fault active.
  Every fault heals exactly once: heal() forgets what it healed, and close heals what is left.
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Callable, Iterable

from harness.history import History

VERIFY_JOIN_S = 35.0     # longest a heal waits for its fault's verify (every kind's verify_timeout_s <= 30)


class FaultLog:
    """Wraps a History; `run(f, value, fn)` records invoke, then ok (fn's result) or fail (its error)."""

    def __init__(self, history: History | None = None, process: str = "nemesis"):
        self.history = history if history is not None else History()   # an empty History is falsy: keep it
        self.process = process

    def run(self, f: str, value: Any, fn: Callable[[], Any]) -> Any:
        """Record invoke, run fn, record ok with its result (or fail with its error, re-raised)."""
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


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Entry:
    """One applied protocol fault: its active fault, start op, and the verdict once verify() ran."""

    def __init__(self, index: int, fault: Any, op: dict, apply_ms: float):
        self.index = index
        self.fault = fault
        self.op = op
        self.apply_ms = apply_ms
        self.verdict: dict | None = None
        self.verified = threading.Event()     # set once verify() returned and its op is recorded


class FaultBook:
    """Applies registry kinds to one stack, records them in the log's History and heals each exactly once."""

    def __init__(self, stack: Any, log: FaultLog, lookup: Callable[[str], Any] | None = None,
                 verify_join_s: float = VERIFY_JOIN_S):
        self.stack = stack
        self.log = log
        self._lookup = lookup
        self.verify_join_s = verify_join_s
        self._entries: dict[int, Entry] = {}
        self._lock = threading.Lock()
        self._indexes = itertools.count()

    def _kind(self, name: str) -> Any:
        if self._lookup is None:
            from harness.nemesis.protocol import lookup   # late: the protocol imports every kind
            self._lookup = lookup
        return self._lookup(name)

    def apply(self, kind: str, target: str, background: bool = True, **params: Any) -> Any:
        """Apply a registry kind and return its active fault (NemesisError, recorded as fail, when apply
        raised); verify() runs in a thread unless background is False."""
        index = next(self._indexes)
        history = self.log.history
        op = history.invoke(self.log.process, "start", {"kind": kind, "target": target, "params": dict(params),
                                                        "index": index})
        t0 = time.monotonic()
        try:
            fault = self._kind(kind).apply(self.stack, target, **params)
        except Exception as exc:
            history.complete(op, "fail", {"verified": False, "evidence": None, "error": repr(exc)[:500],
                                          "apply_ms": _ms(time.monotonic() - t0), "verify_ms": None})
            raise
        entry = Entry(index, fault, op, _ms(time.monotonic() - t0))
        with self._lock:
            self._entries[index] = entry
        if background:
            threading.Thread(target=self._verify, args=(entry,), name=f"verify-{kind}-{index}", daemon=True).start()
        else:
            self._verify(entry)
        return fault

    def _verify(self, entry: Entry) -> None:
        """Run the fault's verify() and complete its start op with the verdict."""
        t0 = time.monotonic()
        try:
            verdict = entry.fault.verify()
        except Exception as exc:  # noqa: BLE001 - a verify that raises did not hold
            verdict = {"held": False, "evidence": {"error": repr(exc)[:500]}}
        entry.verdict = {"held": bool(verdict.get("held")), "evidence": verdict.get("evidence")}
        self.log.history.complete(entry.op, "ok", {"verified": entry.verdict["held"], "evidence": entry.verdict["evidence"],
                                                   "error": None, "apply_ms": entry.apply_ms,
                                                   "verify_ms": _ms(time.monotonic() - t0)})
        entry.verified.set()

    def wait_verified(self, fault: Any, timeout_s: float | None = None) -> dict | None:
        """The verdict {"held", "evidence"} of an applied fault once its verify() ran (None when it has not
        finished within timeout_s, or the fault is not in the book)."""
        entry = next((e for e in self.entries() if e.fault is fault), None)
        if entry is None or not entry.verified.wait(self.verify_join_s if timeout_s is None else timeout_s):
            return None
        return entry.verdict

    def entries(self) -> list[Entry]:
        """The faults still active (not yet fully healed), oldest first."""
        with self._lock:
            return [self._entries[i] for i in sorted(self._entries)]

    def is_active(self, fault: Any) -> bool:
        return any(e.fault is fault for e in self.entries())

    def heal(self, faults: Iterable[Any] | None = None) -> list[str]:
        """Heal the given active faults (all when None), newest first, each recorded as a stop op; a fully
        healed fault leaves the book. Returns what could not be undone ([] = all healed)."""
        wanted = None if faults is None else {id(f) for f in faults}
        left: list[str] = []
        for entry in reversed(self.entries()):
            if wanted is not None and id(entry.fault) not in wanted:
                continue
            entry.verified.wait(self.verify_join_s)       # verify sees the fault active, never a healed one
            fault = entry.fault
            op = self.log.history.invoke(self.log.process, "stop", {"kind": fault.kind, "target": fault.target,
                                                                     "index": entry.index})
            try:
                unhealed = list(fault.heal())
            except Exception as exc:  # noqa: BLE001 - heal() should not raise; if it does, it is unhealed
                unhealed = [f"{fault.kind} {fault.target}: {exc!r}"[:500]]
            self.log.history.complete(op, "fail" if unhealed else "ok", {"unhealed": unhealed})
            if not unhealed:
                with self._lock:
                    self._entries.pop(entry.index, None)
            left += unhealed
        return left
