"""KitWorld: what one scenario holds over the kit's stack: its Jepsen-style history (client ops and the
nemesis's fault ops in one), the faults still active (applied one by one, or by a played schedule), free
vars the steps share, and the checker's verdict."""
from __future__ import annotations

import sys
import time
from typing import Any

from harness.history import History
from harness.nemesis.player import FaultPlayer
from harness.nemesis.protocol import heal_all, lookup

NEMESIS = "nemesis"   # the process name of fault ops in the history (Jepsen's :nemesis)


def say(line: str) -> None:
    """One line for the run's console on the real stderr (behave captures stdout)."""
    print(line, file=sys.__stderr__, flush=True)


class KitWorld:
    """One scenario's state: stack, history, active faults, vars, the last proof and verdict."""

    def __init__(self, stack: Any, history: History | None = None):
        self.stack = stack
        self.history = history if history is not None else History()
        self.faults: list[Any] = []          # applied and not yet healed, oldest first
        self.vars: dict[str, Any] = {}       # shared by steps; "{name}" in a step's text is replaced by vars[name]
        self.proof: dict | None = None       # the last verify() of a fault
        self.left: list[str] | None = None   # what the last heal_all() could not undo
        self.verdict: dict | None = None     # the last checker result
        self.applied_at: float | None = None  # monotonic time the newest fault was in place
        self.player: FaultPlayer | None = None  # the player of the last schedule (play())
        self.played: list[dict] | None = None   # its per-fault results (FaultPlayer.play)
        self.schedule_meta: dict = {}          # what drew that schedule: seed, profile, duration

    def resolve(self, text: str) -> str:
        """A step argument with every "{name}" replaced by vars[name] (AssertionError naming an unknown one)."""
        try:
            return text.format(**self.vars)
        except KeyError as exc:
            raise AssertionError(f"{text!r} names {exc}, which no earlier step set; vars: {sorted(self.vars)}") from None

    def apply(self, kind: str, target: str, **params: Any) -> Any:
        """Apply a registry kind to a target, recorded as a nemesis invoke and its info (or fail) completion."""
        op = self.history.invoke(NEMESIS, kind, target, params=params)
        try:
            active = lookup(kind).apply(self.stack, target, **params)
        except Exception as exc:
            self.history.complete(op, "fail", target, error=repr(exc)[:500])
            raise
        self.applied_at = time.monotonic()
        self.history.complete(op, "info", target, params=params)
        self.faults.append(active)
        return active

    def verify_last(self) -> dict:
        """verify() of the newest active fault, kept as `proof` and recorded in the history."""
        if not self.faults:
            raise AssertionError("no fault is active: nothing to verify")
        fault = self.faults[-1]
        self.proof = fault.verify()
        self.history.record(NEMESIS, "info", "verify", fault.target, kind=fault.kind, held=self.proof["held"])
        return self.proof

    def play(self, schedule: list[dict], meta: dict, deadline_s: float) -> list[dict]:
        """Play a fault schedule with the kit's FaultPlayer into this history (each fault applied, verified
        and healed on time; everything healed by the deadline); returns and keeps its per-fault results."""
        self.schedule_meta = dict(meta)
        self.history.record(NEMESIS, "info", "schedule", len(schedule), **self.schedule_meta)
        self.player = FaultPlayer(self.stack, self.history)
        self.played = self.player.play(schedule, deadline_s=deadline_s)
        return self.played

    @property
    def active(self) -> list[str]:
        """Every fault still in effect ("kind target"): those applied one by one, then a schedule's unhealed."""
        names = [f"{f.kind} {f.target}" for f in self.faults]
        if self.player is not None:
            results = self.player.results()
            names += [f"{results[i]['kind']} {results[i]['target']}" for i in self.player.active]
        return names

    def heal_all(self) -> list[str]:
        """Heal every active fault (newest first) and what a schedule left active, recorded as one nemesis
        heal op; returns what was left."""
        names = self.active
        op = self.history.invoke(NEMESIS, "heal", names)
        self.left = heal_all(self.faults) + (self.player.heal_all() if self.player else [])
        self.history.complete(op, "info", names, left=self.left)
        if not self.left:
            self.faults = []
        return self.left
