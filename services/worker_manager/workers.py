"""The hive's table of local workers and the jobs it forwarded to them."""
from __future__ import annotations

import time

from services.common.heartbeat import PeerLiveness


class LocalWorker:
    """One registered worker as the hive sees it."""

    __slots__ = ("ident", "id", "session", "model", "models", "slots", "free_slots", "state", "jobs", "joined_at")

    def __init__(self, ident: bytes, body: dict):
        self.ident = ident
        self.id = ident.decode(errors="replace")
        session = body.get("session")
        self.session = session if isinstance(session, str) and session else None
        self.model = str(body.get("model", ""))
        models = body.get("models")
        self.models = [m for m in models if isinstance(m, str)] if isinstance(models, list) else [self.model]
        slots = body.get("slots")
        self.slots = slots if isinstance(slots, int) and not isinstance(slots, bool) else 1
        free = body.get("free_slots")
        self.free_slots = free if isinstance(free, int) and not isinstance(free, bool) else self.slots
        state = body.get("state")
        self.state = state if isinstance(state, str) else "ready"
        self.jobs: set[tuple[str, int]] = set()
        self.joined_at = time.time()

    def describe(self, age_s: float | None = None) -> dict:
        """Return the worker as listed in READY and GET /v1/workers."""
        info = {"id": self.id, "worker_id": self.id, "role": "worker", "session": self.session, "model": self.model,
                "models": list(self.models), "slots": self.slots, "free_slots": self.free_slots,
                "state": self.state, "jobs": len(self.jobs)}
        if age_s is not None:
            info["age_s"] = round(age_s, 3)
        return info


class WorkerTable:
    """Workers by identity, their liveness, and the (job_id, attempt) → worker map of forwarded jobs."""

    def __init__(self, interval_s: float, liveness: int):
        self.workers: dict[bytes, LocalWorker] = {}
        self.liveness = PeerLiveness(interval_s, liveness)
        self.jobs: dict[tuple[str, int], LocalWorker] = {}

    def add(self, ident: bytes, body: dict) -> tuple[LocalWorker, LocalWorker | None]:
        """Register (or re-register) a worker; return (new entry, previous entry or None)."""
        previous = self.remove(ident)
        worker = self.workers[ident] = LocalWorker(ident, body)
        self.liveness.touch(ident)
        return worker, previous

    def remove(self, ident: bytes) -> LocalWorker | None:
        """Forget a worker and its jobs; return it (None if unknown)."""
        worker = self.workers.pop(ident, None)
        self.liveness.forget(ident)
        if worker is not None:
            for key in worker.jobs:
                self.jobs.pop(key, None)
        return worker

    def purge_expired(self) -> list[LocalWorker]:
        """Remove and return every worker silent longer than the expiry."""
        return [w for w in (self.remove(ident) for ident in self.liveness.purge_expired()) if w is not None]

    def track(self, key: tuple[str, int], worker: LocalWorker) -> None:
        """Remember that a job attempt runs on a worker."""
        self.jobs[key] = worker
        worker.jobs.add(key)

    def untrack(self, key: tuple[str, int]) -> LocalWorker | None:
        """Forget a finished job attempt; return its worker."""
        worker = self.jobs.pop(key, None)
        if worker is not None:
            worker.jobs.discard(key)
        return worker

    def clear_jobs(self) -> list[tuple[tuple[str, int], LocalWorker]]:
        """Forget every job and return what was in flight."""
        items = list(self.jobs.items())
        self.jobs.clear()
        for worker in self.workers.values():
            worker.jobs.clear()
        return items

    def heartbeat_map(self) -> dict:
        """Return {worker_id: {age_s, free_slots, state}} for the upstream heartbeat."""
        age = self.liveness.age
        return {w.id: {"age_s": round(age(ident) or 0.0, 3), "free_slots": w.free_slots, "state": w.state}
                for ident, w in self.workers.items()}

    def describe(self) -> list[dict]:
        """Return every worker for READY and GET /v1/workers."""
        return [w.describe(self.liveness.age(ident)) for ident, w in self.workers.items()]

    def count_states(self) -> dict[str, int]:
        """Return how many workers are in each state."""
        counts: dict[str, int] = {}
        for w in self.workers.values():
            counts[w.state] = counts.get(w.state, 0) + 1
        return counts
