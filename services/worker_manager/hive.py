"""The hive: registers with the orchestrator, tracks its workers, relays jobs and token streams, provisions models."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time

import zmq

from services import protocol as p
from services.common.heartbeat import Backoff, Liveness, StallClock
from services.common.logs import OncePerPeer
from services.transport.loop import LoopSocket, make_dealer, make_router

from .config import HiveConfig
from .metrics import HiveMetrics
from .provision import Provisioner
from .workers import LocalWorker, WorkerTable

log = logging.getLogger("worker-manager")

_JOB_REPLIES = (p.PARTIAL, p.FINAL, p.ERROR)
BURST = 64  # frames handled back to back before a receive loop lets the tick loop and HTTP run


class Hive:
    """One hive process: upstream DEALER, downstream ROUTER, worker table, provisioner."""

    def __init__(self, cfg: HiveConfig, metrics: HiveMetrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or HiveMetrics()
        self.ctx = zmq.Context()
        self.up: LoopSocket | None = None
        self.down: LoopSocket | None = None
        self._tasks: list[asyncio.Task] = []
        self.table = WorkerTable(cfg.interval_s, cfg.liveness)
        self.provisioner = Provisioner(cfg.model_cache, cfg.download_bytes_per_s, cfg.model_size_bytes,
                                       self.metrics, self.send_progress, self.load_everywhere,
                                       cfg.download_attempts)
        self.upstream = Liveness(cfg.interval_s, cfg.liveness)
        self.backoff = Backoff()
        self.registered = False
        self.next_ready_at = 0.0
        self.session = ""  # random per upstream connection: a READY resent on it is recognised as a repeat
        self.ready_since: float | None = None  # first READY on the current connection still unanswered
        self._ready_fut: asyncio.Future | None = None
        self.shutting_down = False
        self.stopped = asyncio.Event()
        self.once = OncePerPeer()
        self.registrations = 0
        self.announced: set[str] = set()  # worker ids listed in the last READY sent upstream
        self.stall: StallClock | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Bind for workers, connect upstream, and serve until shut down."""
        self.down = LoopSocket(make_router(self.ctx, self.cfg.worker_bind), self.on_worker_frames, burst=BURST,
                               name="workers")
        self.connect_upstream()
        self._tasks.append(asyncio.ensure_future(self.tick_loop()))
        log.info("hive started", extra={"event": "started", "hive_id": self.cfg.hive_id,
                                        "orchestrator": self.cfg.orchestrator_addr,
                                        "worker_bind": self.cfg.worker_bind})
        await self.stopped.wait()

    def connect_upstream(self) -> None:
        """(Re)create the DEALER to the orchestrator (dropping anything queued), read by on_upstream_frames."""
        if self.up is not None:
            self.up.close(linger=0)  # also cancels a READY still waiting for the connection
        self.up = LoopSocket(make_dealer(self.ctx, self.cfg.hive_id, self.cfg.orchestrator_addr, self.cfg.interval_s,
                                         self.upstream.expiry_s), self.on_upstream_frames, burst=BURST,
                             name="upstream")
        self.session = secrets.token_hex(8)
        self.ready_since = None
        self._ready_fut = None

    def request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown (SIGTERM/SIGINT)."""
        asyncio.ensure_future(self.shutdown(self.cfg.grace_s, reason))

    async def shutdown(self, grace_s: float, reason: str) -> None:
        """SHUTDOWN the workers, wait for their DISCONNECT (or the grace), DISCONNECT upstream, stop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down", extra={"event": "shutting_down", "reason": reason,
                                         "workers": len(self.table.workers), "grace_s": grace_s})
        for ident in list(self.table.workers):
            self.send_down(ident, p.SHUTDOWN, {"grace_s": grace_s})
        deadline = time.monotonic() + grace_s + 0.5
        while self.table.workers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.send_up(p.DISCONNECT, {"reason": "shutdown"}, force=True)
        await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for sock in (self.up, self.down):
            if sock is not None:
                sock.close(linger=200)
        self.ctx.term()
        log.info("stopped", extra={"event": "stopped", "workers_left": len(self.table.workers)})
        self.stopped.set()

    # ---- sending -----------------------------------------------------------------------------

    def send_up(self, command: bytes, body: dict, force: bool = False) -> None:
        """Send a frame to the orchestrator (only once registered unless forced); count drops."""
        if not (self.registered or force) or not self.up.send(p.encode(command, body)):
            self.metrics.dropped("upstream").inc()

    def send_down(self, ident: bytes, command: bytes, body: dict) -> bool:
        """Send a frame to one worker; count and report a drop."""
        if self.down.send([ident, *p.encode(command, body)]):
            return True
        self.metrics.dropped("downstream").inc()
        return False

    def send_progress(self, body: dict) -> None:
        """Forward a provisioning PROGRESS upstream."""
        self.send_up(p.PROGRESS, body)

    def load_everywhere(self, model: str) -> None:
        """Ask every worker lacking `model` to load it."""
        for ident, worker in self.table.workers.items():
            if model not in worker.models:
                self.send_down(ident, p.PROVISION, {"model": model})

    def send_ready_upstream(self) -> None:
        """Register with the orchestrator, listing live workers and cached models.

        The READY waits for the connection to complete (rather than being dropped while the DEALER
        is still connecting); while one is still waiting, no second one is queued behind it.
        """
        if self._ready_fut is not None and not self._ready_fut.done():
            return
        workers = self.table.describe()
        self.announced = {w["id"] for w in workers}
        self._ready_fut = self.up.send_when_connected(p.encode(p.READY, {
            "role": "hive", "id": self.cfg.hive_id, "session": self.session, "workers": workers,
            "models": self.provisioner.cached_models()}))

    def retry_registration(self, now: float) -> None:
        """While unregistered: resend READY when due, on a fresh DEALER once one went unanswered for an expiry.

        A READY left unanswered for a whole expiry means the connection may be half-open (a connect
        or handshake that will never complete, a peer that vanished): the DEALER is recreated so the
        next attempt starts from a new TCP connection.  Resends are never closer than the heartbeat
        interval.
        """
        if self.shutting_down or now < self.next_ready_at:
            return
        if self.ready_since is not None and now - self.ready_since >= self.upstream.expiry_s:
            log.info("no READY ack from the orchestrator; reconnecting",
                     extra={"event": "upstream_reconnect", "waited_s": round(now - self.ready_since, 3)})
            self.connect_upstream()
        self.send_ready_upstream()
        if self.ready_since is None:
            self.ready_since = now
        self.next_ready_at = now + max(self.cfg.interval_s, self.backoff.next_delay())

    def announce_changes(self) -> None:
        """After the READY ack, report workers that joined or vanished since that READY was sent."""
        current = {w.id: w for w in self.table.workers.values()}
        for worker_id in self.announced - current.keys():
            self.send_up(p.WORKER, {"worker_id": worker_id, "event": "lost", "reason": "lost while registering"})
        for worker_id in current.keys() - self.announced:
            self.announce_joined(current[worker_id])

    def announce_joined(self, worker: LocalWorker) -> None:
        """Send WORKER joined for one worker."""
        self.send_up(p.WORKER, {"worker_id": worker.id, "event": "joined", "session": worker.session,
                                "model": worker.model, "models": worker.models, "slots": worker.slots,
                                "free_slots": worker.free_slots, "state": worker.state})

    # ---- periodic ----------------------------------------------------------------------------

    async def tick_loop(self) -> None:
        """Every interval/4: heartbeat both ways, purge silent workers, watch and re-register upstream.

        Heartbeats go first.  A late tick means our own loop (or process) was stalled: that time is
        credited to the workers and the orchestrator instead of counting as their silence.
        """
        interval = self.cfg.interval_s
        stall = self.stall = StallClock(interval / 4)
        next_beat = 0.0
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            late = stall.tick()
            for sock in (self.up, self.down):
                if sock is not None:
                    sock.kick()  # a safety net against a lost edge of ZeroMQ's FD
            if now >= next_beat:
                next_beat = now + interval
                self.send_heartbeats()
            if late:
                self.table.liveness.credit(late)
                self.upstream.credit(late)
                if late >= self.upstream.expiry_s / 2:
                    log.warning("event loop stalled; not counting it as peer silence",
                                extra={"event": "loop_stalled", "stalled_s": round(late, 3)})
            self.purge_workers()
            if self.registered:
                if self.upstream.expired():
                    self.lose_upstream("silent")
            else:
                self.retry_registration(now)

    def purge_workers(self) -> None:
        """Declare silent workers lost and tell the orchestrator at once."""
        for worker in self.table.purge_expired():
            log.warning("worker lost", extra={"event": "worker_lost", "worker_id": worker.id,
                                              "jobs": len(worker.jobs)})
            self.send_up(p.WORKER, {"worker_id": worker.id, "event": "lost", "reason": "heartbeat expired"})

    def send_heartbeats(self) -> None:
        """Heartbeat every worker, and the orchestrator with the per-worker map."""
        for ident in list(self.table.workers):
            self.send_down(ident, p.HEARTBEAT, {})
        if self.registered:
            self.send_up(p.HEARTBEAT, {"workers": self.table.heartbeat_map()})

    def lose_upstream(self, reason: str) -> None:
        """Cancel in-flight jobs, recreate the DEALER and re-register after a backoff delay."""
        jobs = self.table.clear_jobs()
        log.warning("orchestrator lost", extra={"event": "upstream_lost", "reason": reason, "jobs": len(jobs)})
        self.registered = False
        for (job_id, attempt), worker in jobs:
            self.send_down(worker.ident, p.CANCEL, {"job_id": job_id, "attempt": attempt})
        self.connect_upstream()
        self.next_ready_at = time.monotonic() + max(self.cfg.interval_s, self.backoff.next_delay())

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
                self.send_down(ident, p.DISCONNECT, {"reason": p.NOT_REGISTERED})
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
            self.send_down(ident, p.ERROR, p.error_body(p.UNKNOWN_COMMAND,
                                                        f"{p.COMMAND_NAMES[command]} not expected from a worker"))

    def relay(self, worker: LocalWorker, command: bytes, body: dict, rest: list) -> None:
        """Forward a job's PARTIAL/FINAL/ERROR upstream unchanged; drop frames of jobs we no longer track."""
        job_id = body.get("job_id")
        if job_id is None:  # an ERROR about one of our frames, not a job
            if self.once.first(worker.id, "error:" + body["code"]):
                log.warning("worker rejected a frame", extra={"event": "worker_error_frame", "worker_id": worker.id,
                                                              "code": body["code"], "detail": body["message"]})
            return
        key = (job_id, body.get("attempt"))
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
        if body["role"] != "worker" or body["id"].encode() != ident or not isinstance(body.get("model"), str):
            self.count_bad_frame(ident.decode(errors="replace"),
                                 p.ProtocolError(p.BAD_BODY, "worker READY needs role 'worker', id equal to "
                                                             "its socket identity, and a model"))
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

    # ---- views -------------------------------------------------------------------------------

    def ready_reason(self) -> str | None:
        """Return why the hive cannot serve, or None."""
        if self.shutting_down:
            return "shutting down"
        if not self.registered:
            return "not registered with orchestrator"
        if not any(w.state in ("ready", "busy") for w in self.table.workers.values()):
            return "no ready worker"
        return None
