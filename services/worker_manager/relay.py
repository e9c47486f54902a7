"""What the hive does with each frame: from the orchestrator (jobs, cancels, acks) and from its workers (relayed)."""
from __future__ import annotations

import asyncio
import logging

from services import protocol as p

from .workers import LocalWorker

log = logging.getLogger("worker-manager")  # part of the hive: its records keep the hive's logger

_JOB_REPLIES = (p.PARTIAL, p.FINAL, p.ERROR)
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

    def on_upstream_frames(self, frames: list) -> None:
        """Handle one message from the orchestrator (called by the upstream LoopSocket)."""
        self.upstream.touch()
        try:
            msg = p.decode(frames)
        except p.ProtocolError as exc:
            self.count_bad_frame("orchestrator", exc)
            self.up.send(p.encode(p.ERROR, p.error_body(exc.code, exc.reason)))
            return
        try:
            self.handle_upstream(msg.command, msg.body, frames)
        except Exception:  # a bug must not stop the relay
            log.exception("upstream frame failed", extra={"event": "handler_error", "command": msg.name})

    def handle_upstream(self, command: bytes, body: dict, frames: list) -> None:
        """Act on one decoded frame from the orchestrator."""
        if command == p.REQUEST:
            self.dispatch(body, frames)
        elif command == p.HEARTBEAT:
            pass
        elif command == p.CANCEL:
            self.cancel(body, frames)
        elif command == p.READY:
            if not self.registered:
                self.registered = True
                self.ready_since = None
                self.registrations += 1
                self.backoff.reset()
                log.info("registered upstream", extra={"event": "registered", "workers": len(self.table.workers)})
                self.announce_changes()
        elif command == p.DISCONNECT:
            if not self.shutting_down:
                self.lose_upstream(f"disconnect: {body['reason']}")
        elif command == p.PROVISION:
            size = body.get("size_bytes")
            self.provisioner.request(body["model"], size if isinstance(size, int) and size > 0 else None)
        elif command == p.SHUTDOWN:
            grace = body.get("grace_s")
            asyncio.ensure_future(self.shutdown(float(grace) if isinstance(grace, (int, float)) else self.cfg.grace_s,
                                                "shutdown from orchestrator"))
        elif command == p.ERROR:
            if self.once.first("orchestrator-error", body["code"]):
                log.warning("orchestrator rejected a frame", extra={"event": "upstream_error", "code": body["code"],
                                                                    "detail": body["message"]})
        else:
            self.send_up(p.ERROR, p.error_body(p.UNKNOWN_COMMAND, f"{p.COMMAND_NAMES[command]} not expected by a hive"))

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

    def handle_worker(self, ident: bytes, command: bytes, body: dict, rest: list) -> None:
        """Act on one decoded frame from a worker."""
        worker = self.table.workers.get(ident)
        if command in _JOB_REPLIES and worker is not None:
            self.relay(worker, command, body, rest)
        elif command == p.READY:
            self.register_worker(ident, body)
        elif worker is None:
            if command != p.DISCONNECT:
                self.metrics.protocol_errors.labels(p.NOT_REGISTERED).inc()
                self.send_down(ident, p.DISCONNECT, {"reason": p.NOT_REGISTERED})
        elif command in (p.HEARTBEAT, p.CAPACITY) and self.reject_state(worker, body):
            return
        elif command == p.HEARTBEAT:
            free = body.get("free_slots")
            if isinstance(free, int):
                worker.free_slots = free
            state = body.get("state")
            if isinstance(state, str) and state != worker.state:
                self.change_state(worker, state)
        elif command == p.CAPACITY:
            worker.free_slots = body["free_slots"]
            models = body.get("models")
            if isinstance(models, list):
                worker.models = [m for m in models if isinstance(m, str)]
            if body["worker_id"] == worker.id:
                self.forward_up(rest)
            else:  # a worker speaks only for itself
                self.send_up(p.CAPACITY, {**body, "worker_id": worker.id})
            self.change_state(worker, body["state"])
        elif command == p.DISCONNECT:
            self.table.remove(ident)
            log.info("worker left", extra={"event": "worker_left", "worker_id": worker.id, "reason": body["reason"]})
            self.send_up(p.WORKER, {"worker_id": worker.id, "event": "left", "reason": body["reason"]})
        else:
            self.metrics.protocol_errors.labels(UNEXPECTED_COMMAND).inc()
            self.send_down(ident, p.ERROR, p.error_body(p.UNKNOWN_COMMAND,
                                                        f"{p.COMMAND_NAMES[command]} not expected from a worker"))

    def relay(self, worker: LocalWorker, command: bytes, body: dict, rest: list) -> None:
        """Forward a job's PARTIAL/FINAL/ERROR upstream unchanged; drop frames of jobs we no longer track."""
        job_id, attempt = body.get("job_id"), body.get("attempt")
        if not isinstance(job_id, str):  # an ERROR about one of our frames, not a job (as the orchestrator reads it)
            if self.once.first(worker.id, "error:" + body["code"]):
                log.warning("worker rejected a frame", extra={"event": "worker_error_frame", "worker_id": worker.id,
                                                              "code": body["code"], "detail": body["message"]})
            return
        if not isinstance(attempt, int) or isinstance(attempt, bool):  # no attempt we sent: stale (and unhashable?)
            self.metrics.dropped("stale").inc()
            return
        key = (job_id, attempt)
        if command == p.PARTIAL:
            if key not in self.table.jobs:
                self.metrics.dropped("stale").inc()
                return
        elif self.table.untrack(key) is None:
            self.metrics.dropped("stale").inc()
            return
        self.forward_up(rest)

    def forward_up(self, frames: list) -> None:
        """Send already-encoded frames upstream."""
        if not self.registered or not self.up.send(frames):
            self.metrics.dropped("upstream").inc()

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
