"""Workers and hives as rows of the orchestrator's cluster table."""
from __future__ import annotations

import time


class Worker:
    """One worker: its hive, models, slots, running attempts {job_id: attempt}, state and heartbeat age.

    `held` counts slots the worker reports busy with work we do not track (jobs of an earlier
    registration still being cancelled, a job it refused for lack of a slot): free = slots - running - held.
    """

    __slots__ = ("id", "hive_id", "model", "models", "slots", "running", "state", "age_s", "age_at", "ever_lost",
                 "session", "hive_session", "held")

    def __init__(self, worker_id: str, hive_id: str, model: str, models: list[str], slots: int):
        self.id, self.hive_id, self.model, self.slots = worker_id, hive_id, model, slots
        self.models = list(dict.fromkeys([model, *models]))
        self.running: dict[str, int] = {}
        self.state = "lost"
        self.age_s = 0.0
        self.age_at = time.monotonic()
        self.ever_lost = False
        self.session: str | None = None       # the worker's connection to its hive (READY `session`)
        self.hive_session: str | None = None  # the hive's connection it was registered through
        self.held = 0

    @property
    def free(self) -> int:
        """Slots we may dispatch to now."""
        return self.slots - len(self.running) - self.held

    def reported_free(self, free_slots: int) -> bool:
        """Take the worker's own free-slot count (registration, rejection); return True when slots opened."""
        held = max(0, self.slots - max(0, free_slots) - len(self.running))
        opened, self.held = held < self.held, held
        return opened

    def release_held(self, free_slots: int) -> bool:
        """A heartbeat's free-slot count can only release held slots (it may predate our last dispatches)."""
        held = min(self.held, max(0, self.slots - max(0, free_slots) - len(self.running)))
        opened, self.held = held < self.held, held
        return opened

    def public(self) -> dict:
        age = self.age_s + (time.monotonic() - self.age_at) if self.state not in ("lost", "left") else None
        return {"id": self.id, "hive": self.hive_id, "model": self.model, "models": self.models, "slots": self.slots,
                "free_slots": max(0, self.free), "running": len(self.running),
                "state": self.state, "last_heartbeat_age_s": None if age is None else round(age, 3)}


class Hive:
    """One hive (worker-manager): ZeroMQ identity, state, its workers, cached models and provisioning progress."""

    __slots__ = ("id", "identity", "state", "workers", "models", "ever_lost", "session")

    def __init__(self, hive_id: str, identity: bytes):
        self.id, self.identity = hive_id, identity
        self.state = "lost"
        self.workers: set[str] = set()
        self.models: list[str] = []
        self.ever_lost = False
        self.session: str | None = None  # READY `session` of the registered connection
