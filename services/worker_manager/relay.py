"""What the hive does with each frame: from the orchestrator (jobs, cancels, acks) and from its workers (relayed)."""
from __future__ import annotations

import logging

from services import protocol as p

from .workers import LocalWorker

log = logging.getLogger("worker-manager")  # part of the hive: its records keep the hive's logger

UNEXPECTED_COMMAND = "unexpected_command"  # the metric reason the orchestrator uses for a command sent the wrong way


def bad_worker_fields(body: dict) -> str | None:
    """Why a worker's `slots` / `state` (when present) are out of the protocol's range, or None when they are fine."""
    slots, state = body.get("slots"), body.get("state")
    if slots is not None and (not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= p.MAX_SLOTS):
        return f"slots must be an integer 1..{p.MAX_SLOTS}"
    if state is not None and state not in p.WORKER_STATES:
        return f"state must be one of {p.WORKER_STATES}"
    return None


class RelayMixin:
    """Hive methods that handle incoming frames; mixed into Hive, which owns the sockets and the worker table."""

    # ---- upstream ----------------------------------------------------------------------------

    def upstream_handlers(self) -> dict:
        """Return {command: handler(body, frames)} for the orchestrator's frames (READY, HEARTBEAT, SHUTDOWN, ERROR: the peer's)."""
        return {p.REQUEST: self.dispatch, p.CANCEL: self.cancel, p.DISCONNECT: self.on_upstream_disconnect,
                p.PROVISION: self.provision}

    def count_upstream_bad_frame(self, exc: p.ProtocolError) -> None:
        """Count and log a malformed frame from the orchestrator (the peer answers it with ERROR)."""
        self.count_bad_frame("orchestrator", exc)

    def on_upstream_disconnect(self, body: dict, frames: list) -> None:
        """The orchestrator forgot us: reconnect and re-register, unless we are shutting down."""
        if not self.shutting_down:
            self.peer.lose(f"disconnect: {body['reason']}")

    def provision(self, body: dict, frames: list) -> None:
        """Fetch a model the orchestrator asks for."""
        size = body.get("size_bytes")
        self.provisioner.request(body["model"], size if isinstance(size, int) and size > 0 else None)

    def dispatch(self, body: dict, frames: list) -> None:
        """Forward a REQUEST unchanged to the worker it names, or fail the job upstream."""
        job_id, attempt = body["job_id"], body["attempt"]
        if self.shutting_down:
            self.send_up(p.ERROR, p.error_body(p.SHUTTING_DOWN, "hive is shutting down", job_id, attempt))
            return
        ident = body["worker_id"].encode()
        worker = self.table.workers.get(ident)
        if worker is None or not self.down.send([ident, *frames]):
            if worker is not None:
                self.metrics.dropped("downstream").inc()
            self.send_up(p.ERROR, p.error_body(p.WORKER_LOST, f"worker {body['worker_id']} not on hive "
                                                              f"{self.cfg.hive_id}", job_id, attempt))
            return
        self.table.track((job_id, attempt), worker)
        self.metrics.jobs_forwarded.inc()

    def cancel(self, body: dict, frames: list) -> None:
        """Forward a CANCEL to the job's worker; confirm at once when the job is unknown here."""
        worker = self.table.jobs.get((body["job_id"], body["attempt"]))
        if worker is None or not self.down.send([worker.ident, *frames]):
            self.send_up(p.ERROR, p.error_body(p.CANCELLED, "job not running on this hive",
                                               body["job_id"], body["attempt"]))

    # ---- downstream --------------------------------------------------------------------------

    def on_worker_frames(self, frames: list) -> None:
        """Handle one message from a worker (called by the downstream LoopSocket)."""
        ident, rest = frames[0], frames[1:]
        table = self.table
        if ident in table.workers:
            table.liveness.touch(ident)
        try:
            msg = p.decode(rest)
        except p.ProtocolError as exc:
            self.count_bad_frame(ident.decode(errors="replace"), exc)
            self.send_down(ident, p.ERROR, p.error_body(exc.code, exc.reason))
            return
        try:
            self.handle_worker(ident, msg.command, msg.body, rest)
        except Exception:
            log.exception("worker frame failed", extra={"event": "handler_error", "command": msg.name})

    def worker_handlers(self) -> dict:
        """Return the table {command: handler(worker, body, rest)} for a registered worker's frames (READY apart)."""
        return {p.PARTIAL: self.relay_partial, p.FINAL: self.relay_end, p.ERROR: self.relay_end,
                p.HEARTBEAT: self.on_worker_heartbeat, p.CAPACITY: self.on_worker_capacity,
                p.DISCONNECT: self.on_worker_disconnect}

    def handle_worker(self, ident: bytes, command: bytes, body: dict, rest: list) -> None:
        """Act on one decoded frame from a worker: READY registers; other frames need a registered worker."""
        if command == p.READY:
            self.register_worker(ident, body)
            return
        worker = self.table.workers.get(ident)
        if worker is None:
            if command != p.DISCONNECT:
                self.metrics.protocol_errors.labels(p.NOT_REGISTERED).inc()
                self.send_down(ident, p.DISCONNECT, {"reason": p.NOT_REGISTERED})
            return
        handler = self._worker_handlers.get(command)
        if handler is None:
            self.metrics.protocol_errors.labels(UNEXPECTED_COMMAND).inc()
            self.send_down(ident, p.ERROR, p.error_body(p.UNKNOWN_COMMAND,
                                                        f"{p.COMMAND_NAMES[command]} not expected from a worker"))
            return
        handler(worker, body, rest)

    def on_worker_heartbeat(self, worker: LocalWorker, body: dict, rest: list) -> None:
        """Take a worker's free slots and state from its HEARTBEAT (a state outside the protocol's is rejected)."""
        if self.reject_state(worker, body):
            return
        free = body.get("free_slots")
        if isinstance(free, int):
            worker.free_slots = free
        state = body.get("state")
        if isinstance(state, str) and state != worker.state:
            self.change_state(worker, state)

    def on_worker_capacity(self, worker: LocalWorker, body: dict, rest: list) -> None:
        """Record a worker's CAPACITY and forward it upstream in the worker's own name."""
        if self.reject_state(worker, body):
            return
        worker.free_slots = body["free_slots"]
        models = body.get("models")
        if isinstance(models, list):
            worker.models = [m for m in models if isinstance(m, str)]
        if body["worker_id"] == worker.id:
            self.forward_up(rest)
        else:  # a worker speaks only for itself
            self.send_up(p.CAPACITY, {**body, "worker_id": worker.id})
        self.change_state(worker, body["state"])

    def on_worker_disconnect(self, worker: LocalWorker, body: dict, rest: list) -> None:
        """Forget a worker that left and tell the orchestrator."""
        self.table.remove(worker.ident)
        log.info("worker left", extra={"event": "worker_left", "worker_id": worker.id, "reason": body["reason"]})
        self.send_up(p.WORKER, {"worker_id": worker.id, "event": "left", "reason": body["reason"]})

    def relay_partial(self, worker: LocalWorker, body: dict, rest: list) -> None:
        """Forward a PARTIAL of a job we track upstream unchanged; drop it as stale otherwise."""
        key = self.job_key(worker, body)
        if key is None:
            return
        if key not in self.table.jobs:
            self.metrics.dropped("stale").inc()
            return
        self.forward_up(rest)

    def relay_end(self, worker: LocalWorker, body: dict, rest: list) -> None:
        """Forward a job's FINAL/ERROR upstream unchanged and stop tracking it; drop it as stale if untracked."""
        key = self.job_key(worker, body)
        if key is None:
            return
        if self.table.untrack(key) is None:
            self.metrics.dropped("stale").inc()
            return
        self.forward_up(rest)

    def job_key(self, worker: LocalWorker, body: dict) -> tuple[str, int] | None:
        """Return the (job_id, attempt) a reply is about, or None (logged or counted) when it names none of ours."""
        job_id, attempt = body.get("job_id"), body.get("attempt")
        if not isinstance(job_id, str):  # an ERROR about one of our frames, not a job (as the orchestrator reads it)
            if self.once.first(worker.id, "error:" + body["code"]):
                log.warning("worker rejected a frame", extra={"event": "worker_error_frame", "worker_id": worker.id,
                                                              "code": body["code"], "detail": body["message"]})
            return None
        if not isinstance(attempt, int) or isinstance(attempt, bool):  # no attempt we sent: stale (and unhashable?)
            self.metrics.dropped("stale").inc()
            return None
        return job_id, attempt

    def forward_up(self, frames: list) -> None:
        """Send already-encoded frames upstream (only once registered); count drops."""
        if not self.registered:
            self.count_upstream_drop()
            return
        self.peer.send_frames(frames)

    def register_worker(self, ident: bytes, body: dict) -> None:
        """Register a worker (READY), acknowledge it and announce it upstream.

        A READY repeating the session the worker is registered with (resent while our ack was slow)
        is only acknowledged again: no second announcement, and its jobs stay tracked.  A new session
        is a re-registration.
        """
        problem = bad_worker_fields(body)
        if body["role"] != "worker" or body["id"].encode() != ident or not isinstance(body.get("model"), str) \
                or problem:
            self.count_bad_frame(ident.decode(errors="replace"),
                                 p.ProtocolError(p.BAD_BODY, problem or "worker READY needs role 'worker', id equal "
                                                                        "to its socket identity, and a model"))
            self.send_down(ident, p.ERROR, p.error_body(p.BAD_BODY, "bad worker READY"))
            return
        if self.shutting_down:
            self.send_down(ident, p.DISCONNECT, {"reason": p.SHUTTING_DOWN})
            return
        known = self.table.workers.get(ident)
        if known is not None and known.session is not None and body.get("session") == known.session:
            self.table.liveness.touch(ident)
            self.send_down(ident, p.READY, {"role": "hive", "id": self.cfg.hive_id})
            return
        worker, previous = self.table.add(ident, body)
        if previous is not None and previous.jobs:
            self.send_up(p.WORKER, {"worker_id": worker.id, "event": "lost", "reason": "re-registered"})
        self.send_down(ident, p.READY, {"role": "hive", "id": self.cfg.hive_id})
        log.info("worker joined", extra={"event": "worker_joined", "worker_id": worker.id, "model": worker.model,
                                         "slots": worker.slots})
        self.announce_joined(worker)

    def reject_state(self, worker: LocalWorker, body: dict) -> bool:
        """Count and answer a HEARTBEAT/CAPACITY whose state is outside the protocol's; True when rejected."""
        problem = bad_worker_fields({"state": body.get("state")})
        if problem is None:
            return False
        self.count_bad_frame(worker.id, p.ProtocolError(p.BAD_BODY, problem))
        self.send_down(worker.ident, p.ERROR, p.error_body(p.BAD_BODY, problem))
        return True

    def change_state(self, worker: LocalWorker, state: str) -> None:
        """Record a worker's new state; report unhealthy/healthy transitions upstream."""
        old, worker.state = worker.state, state
        if old != "unhealthy" and state == "unhealthy":
            self.send_up(p.WORKER, {"worker_id": worker.id, "event": "unhealthy"})
        elif old == "unhealthy" and state != "unhealthy":
            self.send_up(p.WORKER, {"worker_id": worker.id, "event": "healthy"})

    def count_bad_frame(self, peer: str, exc: p.ProtocolError) -> None:
        """Count a malformed frame and log it once per (peer, reason)."""
        self.metrics.protocol_errors.labels(exc.code).inc()
        if self.once.first(peer, exc.code):
            log.warning("malformed frame", extra={"event": "protocol_error", "peer": peer, "reason": exc.code,
                                                  "detail": exc.reason})
