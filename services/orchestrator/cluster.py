"""Hives and workers as the orchestrator sees them: ROUTER loop, frame routing, heartbeats, liveness sweep.

Registration, worker reports and losses live in membership.py (mixed into Cluster).
"""
from __future__ import annotations

import asyncio
import logging
import time

import zmq

from services.common.heartbeat import PeerLiveness, StallClock
from services.common.logs import OncePerPeer
from services.transport.loop import EHOSTUNREACH, LoopSocket
from services.protocol import (CAPACITY, DISCONNECT, ERROR, FINAL, HEARTBEAT, PARTIAL, PROGRESS, READY, SHUTDOWN,
                               WORKER, ProtocolError, decode, encode, error_body, split_envelope)
from .membership import SCHEDULABLE, MembershipMixin
from .models import ModelTable
from .peers import Hive, Worker

log = logging.getLogger("orchestrator.cluster")
ROUTER_BURST = 64  # frames handled back to back before the router loop lets heartbeats, sweep and HTTP run


class Cluster(MembershipMixin):
    """The hive/worker table and the ROUTER socket; job frames are handed to the scheduler."""

    def __init__(self, settings, metrics, events, registry, socket: LoopSocket | None):
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self.registry = registry
        self.socket = socket
        self.scheduler = None  # set by the service
        self.hives: dict[str, Hive] = {}
        self.by_identity: dict[bytes, Hive] = {}
        self.workers: dict[str, Worker] = {}
        self.by_model: dict[str, list[Worker]] = {}
        self.models = ModelTable(self, events, registry)
        self.liveness = PeerLiveness(settings.heartbeat_interval_s, settings.heartbeat_liveness)
        self.once = OncePerPeer()
        self.hives_gone = asyncio.Event()
        self.stall: StallClock | None = None
        self._stall_logged_at = -1e9
        self._handlers = {PARTIAL: self._on_partial, FINAL: self._on_final, HEARTBEAT: self._on_heartbeat,
                          ERROR: self._on_error, CAPACITY: self._on_capacity, WORKER: self._on_worker,
                          PROGRESS: self._on_progress, READY: self._on_ready, DISCONNECT: self._on_disconnect}

    # ---- loading and queries ----------------------------------------------------------------------
    def load(self, state: dict) -> None:
        """Take hives/workers/models from the registry, all as `lost` until they re-register."""
        for row in state["hives"]:
            hive = self.hives[row["id"]] = Hive(row["id"], row["id"].encode())
            hive.models, hive.ever_lost = row["models"], True
        for row in state["workers"]:
            worker = Worker(row["id"], row["hive"], row["model"], row["models"], row["slots"] or 1)
            worker.ever_lost = True
            self.workers[worker.id] = worker
            if worker.hive_id in self.hives:
                self.hives[worker.hive_id].workers.add(worker.id)
        self.models.load(state["models"])

    def model_known(self, model: str) -> bool:
        """A model is known when a worker serves it (even if currently lost) or it is being provisioned."""
        if model in self.by_model:
            return True
        for worker in self.workers.values():
            if worker.state != "left" and model in worker.models:
                return True
        return self.models.known(model)

    def has_other_worker(self, model: str, excluded: set[str] | None) -> bool:
        return any(w.state in SCHEDULABLE and model in w.models and (not excluded or w.id not in excluded)
                   for w in self.workers.values())

    def reindex(self) -> None:
        """Rebuild model -> schedulable workers."""
        index: dict[str, list[Worker]] = {}
        for worker in self.workers.values():
            if worker.state == "ready":
                for model in worker.models:
                    index.setdefault(model, []).append(worker)
        self.by_model = index

    def counts(self) -> tuple[dict, dict]:
        workers: dict[str, int] = {s: 0 for s in ("ready", "unhealthy", "draining", "lost", "left")}
        hives: dict[str, int] = {s: 0 for s in ("ready", "lost", "left")}
        for worker in self.workers.values():
            workers[worker.state] = workers.get(worker.state, 0) + 1
        for hive in self.hives.values():
            hives[hive.state] = hives.get(hive.state, 0) + 1
        return workers, hives

    # ---- sending ------------------------------------------------------------------------------------
    def send(self, identity: bytes, command: bytes, body: dict | None = None) -> bool:
        """Send without waiting; an unroutable peer or a full queue is a counted drop (returns False)."""
        sock = self.socket
        if sock is None:
            return False
        if sock.send([identity, *encode(command, body)]):
            return True
        self.metrics.dropped("unroutable" if sock.errno == EHOSTUNREACH else "send_queue_full")
        return False

    def send_to_hive(self, hive_id: str | None, command: bytes, body: dict | None = None) -> bool:
        hive = self.hives.get(hive_id) if hive_id else None
        if hive is None or hive.state != "ready":
            self.metrics.dropped("hive_not_ready")
            return False
        return self.send(hive.identity, command, body)

    def hive_unreachable(self, hive_id: str) -> None:
        hive = self.hives.get(hive_id)
        if hive is not None and hive.state == "ready":
            self.hive_lost(hive, "unreachable")

    # ---- ROUTER loop ------------------------------------------------------------------------------
    def attach(self, router: zmq.Socket) -> LoopSocket:
        """Drive the bound ROUTER from the running loop: every message goes to on_frames, in bursts."""
        self.socket = LoopSocket(router, self.on_frames, burst=ROUTER_BURST, name="router")
        return self.socket

    def on_frames(self, frames: list) -> None:
        """Handle one ROUTER message; no frame can stop the socket."""
        try:
            self.handle(frames)
        except Exception as exc:  # a handler bug must not take the cluster down
            peer = bytes(frames[0]).decode("utf-8", "replace") if frames else "?"
            self.metrics.protocol_error("internal")
            if self.once.first(peer, "internal:" + type(exc).__name__):
                log.exception("frame handler failed", extra={"event": "router.handler_error", "peer": peer})

    def handle(self, frames: list) -> None:
        """Decode one ROUTER message and dispatch it by command."""
        try:
            identity, rest = split_envelope(frames)
            msg = decode(rest)
        except ProtocolError as exc:
            self._protocol_error(bytes(frames[0]) if len(frames) > 1 else None, exc.code, exc.reason)
            return
        hive = self.by_identity.get(identity)
        if hive is None or hive.state != "ready":
            if msg.command == READY:
                self._on_ready(msg.body, None, identity)
            elif msg.command != DISCONNECT:
                self.metrics.protocol_error("not_registered")
                peer = identity.decode("utf-8", "replace")
                if self.once.first(peer, "not_registered"):
                    log.info("frame from an unregistered peer; asking it to re-register",
                             extra={"event": "router.not_registered", "peer": peer, "command": msg.name})
                self.send(identity, DISCONNECT, {"reason": "not_registered"})
            return
        self.liveness.touch(hive.id)
        handler = self._handlers.get(msg.command)
        if handler is None:
            self._protocol_error(identity, "unexpected_command", f"{msg.name} is not sent upstream")
            return
        handler(msg.body, hive, identity)

    def _protocol_error(self, identity: bytes | None, code: str, reason: str) -> None:
        self.metrics.protocol_error(code)
        peer = identity.decode("utf-8", "replace") if identity else "?"
        if self.once.first(peer, code):
            log.warning("malformed frame rejected", extra={"event": "router.protocol_error", "peer": peer,
                                                           "reason": code, "detail": reason[:200]})
        if identity:
            self.send(identity, ERROR, error_body(code if code != "unexpected_command" else "unknown_command",
                                                  reason[:500]))

    # ---- handlers -----------------------------------------------------------------------------------
    def _on_partial(self, body, hive, identity):
        self.scheduler.on_partial(body, hive)

    def _on_final(self, body, hive, identity):
        self.scheduler.on_final(body, hive)

    def _on_error(self, body, hive, identity):
        if isinstance(body.get("job_id"), str):
            self.scheduler.on_job_error(body, hive)
        elif self.once.first(hive.id, "error:" + body["code"]):
            log.warning("hive rejected a frame", extra={"event": "router.peer_error", "hive_id": hive.id,
                                                        "reason": body["code"], "detail": body["message"][:200]})

    def _on_progress(self, body, hive, identity):
        self.models.progress(hive.id, body)

    # ---- heartbeats and sweep -----------------------------------------------------------------------
    async def run_heartbeats(self) -> None:
        """Every interval/4: sweep expired hives; every interval: HEARTBEAT each live hive.

        Heartbeats go first and never wait on anything.  Silence only counts while our own loop ran:
        a late tick means the loop (or the process) was stalled, and that time is credited to every
        hive instead of declaring them lost (their frames may be waiting unread).
        """
        interval = self.settings.heartbeat_interval_s
        tick = interval / 4
        stall = self.stall = StallClock(tick)
        next_beat = 0.0
        while True:
            await asyncio.sleep(tick)
            try:
                now = time.monotonic()
                late = stall.tick()
                if isinstance(self.socket, LoopSocket):
                    self.socket.kick()  # a safety net against a lost edge of ZeroMQ's FD
                if now >= next_beat:
                    next_beat = now + interval - tick / 2
                    for hive in list(self.hives.values()):
                        if hive.state == "ready":
                            self.send(hive.identity, HEARTBEAT, {})
                if late:
                    self.liveness.credit(late)
                    self._log_stall(late, now)
                for hive_id in self.liveness.purge_expired():
                    hive = self.hives.get(hive_id)
                    if hive is not None:
                        self.hive_lost(hive, "heartbeat_expired")
            except Exception:  # never let the sweep die
                log.exception("heartbeat tick failed", extra={"event": "cluster.tick_error"})

    def _log_stall(self, late: float, now: float) -> None:
        if late >= self.settings.expiry_s / 2 and now >= self._stall_logged_at + 5.0:
            self._stall_logged_at = now
            log.warning("event loop stalled; not counting it as hive silence",
                        extra={"event": "cluster.loop_stalled", "stalled_s": round(late, 3)})

    def shutdown_hives(self, grace_s: float) -> int:
        """Send SHUTDOWN to every live hive; return how many."""
        live = [h for h in self.hives.values() if h.state == "ready"]
        for hive in live:
            self.send(hive.identity, SHUTDOWN, {"grace_s": grace_s})
        if not live:
            self.hives_gone.set()
        return len(live)
