"""A job as the orchestrator tracks it, and the per-job token sink a streaming response reads."""
from __future__ import annotations

import asyncio
import time

from services.protocol import TERMINAL_STATES, dumps

RUNNING = frozenset({"dispatched", "running"})  # an attempt is out at a worker

# HTTP status for a job that ended with an error code
ERROR_STATUS = {"worker_lost": 502, "worker_error": 502, "rejected": 503, "timeout": 504, "cancelled": 499,
                "reset": 503, "shutting_down": 503, "no_capacity": 503, "orchestrator_restarted": 503}
ERROR_TYPE = {"timeout": "timeout_error", "rejected": "service_unavailable", "shutting_down": "service_unavailable",
              "reset": "service_unavailable", "no_capacity": "service_unavailable"}


class Sink:
    """Token events of a streamed job: ("token", text) / ("end", None); one reader waits on a future."""

    __slots__ = ("items", "waiter")

    def __init__(self):
        self.items: list = []
        self.waiter: asyncio.Future | None = None

    def push(self, item) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list:
        """Return every queued item, waiting for at least one."""
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        items, self.items = self.items, []
        return items


class Job:
    """One request's lifecycle: state, attempts, worker, history, result and its waiters."""

    __slots__ = ("id", "tenant", "model", "prompt", "max_tokens", "seed", "stream", "trace_id", "kind", "state",
                 "attempt", "worker_id", "hive_id", "workers", "created", "updated", "t0", "history", "error",
                 "error_message", "parts", "next_seq", "delivered", "completion_tokens", "finish_reason", "done",
                 "sink", "deadline", "timer", "excluded", "idem", "charged", "uncharged")

    def __init__(self, job_id: str, tenant: str, model: str, prompt: str, max_tokens: int, seed: int,
                 stream: bool, trace_id: str, kind: str, deadline: float, loop: asyncio.AbstractEventLoop):
        self.id = job_id
        self.tenant = tenant
        self.model = model
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.seed = seed
        self.stream = stream
        self.trace_id = trace_id
        self.kind = kind
        self.state = "accepted"
        self.attempt = 0                      # dispatches so far (the wire `attempt` of the current one)
        self.charged = 0                      # attempts that reached a worker which then failed or was lost
        self.uncharged = 0                    # re-dispatches after our own registration churn (bounded apart)
        self.worker_id: str | None = None
        self.hive_id: str | None = None
        self.workers: list[str] = []          # worker of each attempt (index = attempt - 1)
        self.created = self.updated = time.time()
        self.t0 = time.monotonic()
        self.history: list[dict] = [{"state": "accepted", "ts": self.created}]
        self.error: str | None = None
        self.error_message: str | None = None
        self.parts: list[str] = []
        self.next_seq = 0
        self.delivered = False                # a token reached the client (streamed jobs only)
        self.completion_tokens = 0
        self.finish_reason = "length"
        self.done: asyncio.Future = loop.create_future()
        self.sink: Sink | None = Sink() if stream else None
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None
        self.excluded: set[str] | None = None  # workers that rejected this job
        self.idem: tuple | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def transition(self, state: str, **extra) -> None:
        """Move to `state`, appending to the history (extra: worker_id, reason, attempt)."""
        self.state = state
        self.updated = now = time.time()
        entry = {"state": state, "ts": now}
        entry.update(extra)
        self.history.append(entry)

    def row(self) -> tuple:
        """The registry row of this job."""
        return (self.id, self.tenant, self.state, self.model, self.attempt, self.worker_id, self.hive_id,
                self.created, self.updated, self.error, dumps(self.history).decode(), self.error_message)

    def public(self) -> dict:
        """The /v1/jobs/{id} view."""
        return {"id": self.id, "object": "job", "state": self.state, "model": self.model, "attempts": self.attempt,
                "worker_id": self.worker_id, "hive_id": self.hive_id, "created": self.created,
                "updated": self.updated, "trace_id": self.trace_id, "stream": self.stream,
                "history": self.history,
                "error": None if self.error is None else {"code": self.error, "message": self.error_message}}
