"""FaultPlayer: plays a schedule of faults against a stack, recording each as Jepsen-style nemesis ops.

Schedule items are {"start_s", "duration_s", "kind", "target", "params"}; times are relative to the start
of play(). Each fault is applied at start_s, verified right after, and healed at start_s + duration_s.

History ops (process "nemesis"):
- apply: invoke f="start" {kind, target, params, index}; then ok {verified, evidence, error, apply_ms,
  verify_ms} when apply returned (verified False when verify() did not hold), or fail when apply raised
  (that fault is never healed);
- heal: invoke f="stop" {kind, target, index}; then ok {unhealed: []} or fail {unhealed: [...]};
- skip: one info op f="start" {kind, target, params, index, reason, busy_with}.

Skip rule (overlaps): each fault claims (service, lane) pairs (FaultKind.claims). A fault whose claim
conflicts with a still-active fault's (protocol.conflicts: same service, and either lane is "proc", or
the lanes are cut+cut or cut+rule) is skipped with reason "target busy": a kill while paused, two
partitions disconnecting the same service, loss in a service that is cut off. Other overlaps play (a
partition while a worker elsewhere is killed; loss and a one-way drop in one container).
At equal times, heals run before applies. A stop event or the deadline heals everything early, and the
items not yet started are skipped with reason "stopped" or "deadline".
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from harness.errors import NemesisError
from harness.nemesis.protocol import REGISTRY, FaultKind, conflicts

PROCESS = "nemesis"
MAX_SLEEP_S = 0.2
ITEM_KEYS = ("start_s", "duration_s", "kind", "target")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def check_item(index: int, item: Any) -> None:
    """NemesisError naming what is wrong with a schedule item."""
    if not isinstance(item, dict):
        raise NemesisError(f"schedule item {index} is not an object: {item!r}")
    missing = [k for k in ITEM_KEYS if k not in item]
    if missing:
        raise NemesisError(f"schedule item {index} lacks {', '.join(missing)}")
    for k in ("start_s", "duration_s"):
        if isinstance(item[k], bool) or not isinstance(item[k], (int, float)) or item[k] < 0:
            raise NemesisError(f"schedule item {index}: {k} must be a number >= 0, not {item[k]!r}")
    if not isinstance(item.get("params", {}), dict):
        raise NemesisError(f"schedule item {index}: params must be an object")


class FaultPlayer:
    """Plays schedules; remembers what is still active so heal_all() can undo it."""

    def __init__(self, stack: Any, history: Any, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, kinds: dict[str, FaultKind] | None = None):
        self.stack = stack
        self.history = history
        self.clock = clock
        self.sleep = sleep
        self.kinds = REGISTRY if kinds is None else kinds
        self._active: dict[int, dict] = {}     # index -> {"fault", "claims", "item"}
        self._results: dict[int, dict] = {}
        self._lock = threading.Lock()

    # ---- one fault ---------------------------------------------------------------------------------
    def _kind(self, name: str) -> FaultKind:
        if name not in self.kinds:
            raise NemesisError(f"unknown fault kind {name!r}; known: {', '.join(sorted(self.kinds))}")
        return self.kinds[name]

    def _busy_with(self, claims: list[tuple[str, str]]) -> list[int]:
        return sorted(i for i, a in self._active.items() if any(conflicts(c, d) for c in claims for d in a["claims"]))

    def start(self, index: int, item: dict, t0: float) -> dict:
        """Apply and verify one item (or skip it when its target is busy); returns its result."""
        kind_name, target, params = item["kind"], item["target"], dict(item.get("params") or {})
        res = self._results[index]
        res["started_s"] = round(self.clock() - t0, 3)
        try:
            kind = self._kind(kind_name)
            claims = kind.claims(self.stack, target, params)
        except Exception:  # noqa: BLE001 - apply below raises the same error and records it as fail
            kind, claims = None, []
        busy = self._busy_with(claims)
        if busy:
            res.update(status="skipped", reason="target busy", busy_with=busy)
            self.history.record(PROCESS, "info", "start", {"kind": kind_name, "target": target, "params": params,
                                                           "index": index, "reason": "target busy", "busy_with": busy})
            return res
        op = self.history.invoke(PROCESS, "start", {"kind": kind_name, "target": target, "params": params, "index": index})
        t_apply = self.clock()
        try:
            fault = (kind or self._kind(kind_name)).apply(self.stack, target, **params)
        except Exception as exc:  # noqa: BLE001 - recorded as fail; a fault that was not applied is not healed
            res.update(status="failed", error=repr(exc)[:500], apply_ms=ms(self.clock() - t_apply))
            self.history.complete(op, "fail", {"verified": False, "evidence": None, "error": res["error"],
                                               "apply_ms": res["apply_ms"], "verify_ms": None})
            return res
        t_verify = self.clock()
        apply_ms = ms(t_verify - t_apply)
        self._active[index] = {"fault": fault, "claims": claims, "item": item}
        try:
            verdict = fault.verify()
        except Exception as exc:  # noqa: BLE001 - a verify that raises did not hold
            verdict = {"held": False, "evidence": {"error": repr(exc)[:500]}}
        verify_ms = ms(self.clock() - t_verify)
        res.update(status="applied", verified=bool(verdict.get("held")), evidence=verdict.get("evidence"),
                   apply_ms=apply_ms, verify_ms=verify_ms)
        self.history.complete(op, "ok", {"verified": res["verified"], "evidence": res["evidence"], "error": None,
                                         "apply_ms": apply_ms, "verify_ms": verify_ms})
        return res

    def stop_fault(self, index: int, t0: float | None = None) -> list[str]:
        """Heal one active fault (recorded as a stop op); returns what it could not undo."""
        entry = self._active.get(index)
        if entry is None:
            return []
        item = entry["item"]
        op = self.history.invoke(PROCESS, "stop", {"kind": item["kind"], "target": item["target"], "index": index})
        try:
            left = list(entry["fault"].heal())
        except Exception as exc:  # noqa: BLE001 - heal() should not raise; if it does, it is unhealed
            left = [repr(exc)[:500]]
        self.history.complete(op, "fail" if left else "ok", {"unhealed": left})
        res = self._results.get(index)
        if res is not None:
            if t0 is not None:
                res["healed_s"] = round(self.clock() - t0, 3)
            res["unhealed"] = left
        if not left:
            del self._active[index]
        return left

    # ---- a schedule --------------------------------------------------------------------------------
    def play(self, schedule: list[dict], stop: threading.Event | None = None,
             deadline_s: float | None = None) -> list[dict]:
        """Play the schedule; returns one result dict per item, in schedule order."""
        for i, item in enumerate(schedule):
            check_item(i, item)
        with self._lock:
            t0 = self.clock()
            self._results = {i: {"index": i, "kind": it["kind"], "target": it["target"],
                                 "params": dict(it.get("params") or {}), "planned_start_s": it["start_s"],
                                 "duration_s": it["duration_s"], "status": "pending", "reason": None,
                                 "verified": None, "evidence": None, "error": None, "apply_ms": None,
                                 "verify_ms": None, "unhealed": []} for i, it in enumerate(schedule)}
            events = [(it["start_s"], 1, i) for i, it in enumerate(schedule)]
            events += [(it["start_s"] + it["duration_s"], 0, i) for i, it in enumerate(schedule)]
            events.sort()      # by time; heals (0) before applies (1) at the same instant
            reason = None
            try:
                for at, what, i in events:
                    reason = self._wait_until(t0 + at, stop, None if deadline_s is None else t0 + deadline_s)
                    if reason:
                        break
                    if what == 1:
                        self.start(i, schedule[i], t0)
                    elif i in self._active:
                        self.stop_fault(i, t0)
            finally:
                for i in list(self._active):
                    self.stop_fault(i, t0)
            for res in self._results.values():
                if res["status"] == "pending":
                    res.update(status="skipped", reason=reason or "not started")
            return self.results()

    def _wait_until(self, when: float, stop: threading.Event | None, deadline: float | None) -> str | None:
        """Sleep in steps of at most 0.2 s until `when`; "stopped" or "deadline" when cut short."""
        while True:
            if stop is not None and stop.is_set():
                return "stopped"
            now = self.clock()
            if deadline is not None and now >= deadline:
                return "deadline"
            if now >= when:
                return None
            self.sleep(min(MAX_SLEEP_S, (when if deadline is None else min(when, deadline)) - now))

    def results(self) -> list[dict]:
        """Each item's result so far, in schedule order (what play() returns, also after an interruption)."""
        return [self._results[i] for i in sorted(self._results)]

    def heal_all(self) -> list[str]:
        """Heal whatever is still active (idempotent); returns what could not be undone."""
        left: list[str] = []
        for i in sorted(self._active, reverse=True):
            left += self.stop_fault(i)
        return left

    @property
    def active(self) -> list[int]:
        """Indexes of the faults still active."""
        return sorted(self._active)
