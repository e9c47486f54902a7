"""The hive: registers with the orchestrator, tracks its workers, relays jobs and token streams, provisions models.

This file holds its sockets, registration, timing and lifecycle; relay.py what it does with each incoming frame.
The upstream link (READY, heartbeats, loss, reconnect, dispatch) is an UpstreamPeer (services/common/peer.py).
"""
from __future__ import annotations

import asyncio
import logging
import time

import zmq

from services import protocol as p
from services.common.logs import OncePerPeer
from services.common.peer import UpstreamPeer
from services.transport.loop import LoopSocket, make_router
from services.transport.zap import Gatekeeper

from .config import HiveConfig
from .metrics import HiveMetrics
from .provision import Provisioner
from .relay import RelayMixin
from .workers import LocalWorker, WorkerTable

log = logging.getLogger("worker-manager")

BURST = 64  # frames handled back to back before a receive loop lets the tick loop and HTTP run


class Hive(RelayMixin):
    """One hive process: upstream peer, downstream ROUTER, worker table, provisioner."""

    def __init__(self, cfg: HiveConfig, metrics: HiveMetrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or HiveMetrics()
        self.ctx = zmq.Context()
        self.gate: Gatekeeper | None = None
        self.down: LoopSocket | None = None
        self._tasks: list[asyncio.Task] = []
        self.table = WorkerTable(cfg.interval_s, cfg.liveness)
        self._worker_handlers = self.worker_handlers()
        self.provisioner = Provisioner(cfg.model_cache, cfg.download_bytes_per_s, cfg.model_size_bytes,
                                       self.metrics, self.send_progress, self.load_everywhere,
                                       cfg.download_attempts)
        self.peer = UpstreamPeer(
            self.ctx, identity=cfg.hive_id, address=cfg.orchestrator_addr, role="hive", upstream="orchestrator",
            event="upstream", interval_s=cfg.interval_s, liveness=cfg.liveness, curve=cfg.curve, log=log,
            handlers=self.upstream_handlers(), ready_fields=self.ready_fields,
            heartbeat_fields=self.heartbeat_fields, on_registered=self.on_registered,
            on_lost=self.on_upstream_lost, on_bad_frame=self.count_upstream_bad_frame,
            on_drop=self.count_upstream_drop, on_tick=self.tick_workers,
            may_register=lambda: not self.shutting_down, reply=self.send_up, silence="peer",
            keep_time_unregistered=True, catch_handler_errors=True, count_reply_drops=False, burst=BURST,
            on_shutdown=lambda grace: self.shutdown(grace, "shutdown from orchestrator"), grace_s=cfg.grace_s)
        self.shutting_down = False
        self.stopped = asyncio.Event()
        self.once = OncePerPeer()
        self.registrations = 0
        self.announced: set[str] = set()  # worker ids listed in the last READY sent upstream

    @property
    def registered(self) -> bool:
        """True while the orchestrator has acknowledged our READY on the current connection."""
        return self.peer.registered

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Bind for workers, connect upstream, and serve until shut down."""
        if self.cfg.curve is not None:
            self.gate = Gatekeeper(self.ctx, self.cfg.curve, self.metrics.curve_refused).start()
        self.down = LoopSocket(make_router(self.ctx, self.cfg.worker_bind, self.cfg.curve, self.gate),
                               self.on_worker_frames, burst=BURST,
                               name="workers")
        self.peer.connect()
        self._tasks.append(asyncio.ensure_future(self.peer.tick_loop()))
        log.info("hive started", extra={"event": "started", "hive_id": self.cfg.hive_id,
                                        "orchestrator": self.cfg.orchestrator_addr,
                                        "worker_bind": self.cfg.worker_bind})
        await self.stopped.wait()

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
        self.peer.close(linger=200)
        if self.down is not None:
            self.down.close(linger=200)
        if self.gate is not None:
            self.gate.stop()
        self.ctx.term()
        log.info("stopped", extra={"event": "stopped", "workers_left": len(self.table.workers)})
        self.stopped.set()

    # ---- sending -----------------------------------------------------------------------------

    def send_up(self, command: bytes, body: dict, force: bool = False) -> None:
        """Send a frame to the orchestrator (only once registered unless forced); count drops."""
        if not (self.registered or force):
            self.count_upstream_drop()
            return
        self.peer.send(command, body)

    def count_upstream_drop(self) -> None:
        """Count a frame for the orchestrator that could not be sent."""
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

    # ---- the upstream link's hooks -----------------------------------------------------------

    def ready_fields(self) -> dict:
        """Return our READY's fields beyond role, id and session: live workers and cached models."""
        workers = self.table.describe()
        self.announced = {w["id"] for w in workers}
        return {"workers": workers, "models": self.provisioner.cached_models()}

    def heartbeat_fields(self) -> dict:
        """Return the upstream HEARTBEAT body: the per-worker map."""
        return {"workers": self.table.heartbeat_map()}

    def on_registered(self) -> None:
        """After the orchestrator's READY ack: count it, log it and report what changed meanwhile."""
        self.registrations += 1
        log.info("registered upstream", extra={"event": "registered", "workers": len(self.table.workers)})
        self.announce_changes()

    def on_upstream_lost(self, reason: str) -> None:
        """Cancel in-flight jobs at their workers (the peer then reconnects and re-registers)."""
        jobs = self.table.clear_jobs()
        log.warning("orchestrator lost", extra={"event": "upstream_lost", "reason": reason, "jobs": len(jobs)})
        for (job_id, attempt), worker in jobs:
            self.send_down(worker.ident, p.CANCEL, {"job_id": job_id, "attempt": attempt})

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

    def tick_workers(self, now: float, beat: bool, late: float) -> None:
        """The workers' share of the peer's tick: heartbeat them, credit our own stall, purge the silent.

        A late tick means our own loop (or process) was stalled: that time is credited to the
        workers instead of counting as their silence.
        """
        if self.down is not None:
            self.down.kick()  # a safety net against a lost edge of ZeroMQ's FD
        if beat:
            for ident in list(self.table.workers):
                self.send_down(ident, p.HEARTBEAT, {})
        if late:
            self.table.liveness.credit(late)
        self.purge_workers()

    def purge_workers(self) -> None:
        """Declare silent workers lost and tell the orchestrator at once."""
        for worker in self.table.purge_expired():
            log.warning("worker lost", extra={"event": "worker_lost", "worker_id": worker.id,
                                              "jobs": len(worker.jobs)})
            self.send_up(p.WORKER, {"worker_id": worker.id, "event": "lost", "reason": "heartbeat expired"})

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
