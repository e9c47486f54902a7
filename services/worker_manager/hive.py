"""The hive: registers with the orchestrator, tracks its workers, relays jobs and token streams, provisions models.

This file holds its sockets, registration, timing and lifecycle; relay.py what it does with each incoming frame.
"""
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
from services.transport.zap import Gatekeeper

from .config import HiveConfig
from .metrics import HiveMetrics
from .provision import Provisioner
from .relay import RelayMixin
from .workers import LocalWorker, WorkerTable

log = logging.getLogger("worker-manager")

BURST = 64  # frames handled back to back before a receive loop lets the tick loop and HTTP run


class Hive(RelayMixin):
    """One hive process: upstream DEALER, downstream ROUTER, worker table, provisioner."""

    def __init__(self, cfg: HiveConfig, metrics: HiveMetrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or HiveMetrics()
        self.ctx = zmq.Context()
        self.gate: Gatekeeper | None = None
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
        if self.cfg.curve is not None:
            self.gate = Gatekeeper(self.ctx, self.cfg.curve, self.metrics.curve_refused).start()
        self.down = LoopSocket(make_router(self.ctx, self.cfg.worker_bind, self.cfg.curve, self.gate),
                               self.on_worker_frames, burst=BURST,
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
                                         self.upstream.expiry_s, self.cfg.curve, "orchestrator"),
                             self.on_upstream_frames, burst=BURST,
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
        if self.gate is not None:
            self.gate.stop()
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
