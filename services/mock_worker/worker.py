"""The mock worker: registers with its hive, relays engine tokens as PARTIAL/FINAL frames, applies fault knobs.

This file holds its state, lifecycle, hive link and faults; jobs.py how it runs jobs (mixed into Worker).
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

import zmq

from services import protocol as p
from services.common.heartbeat import Backoff, Liveness, StallClock
from services.common.logs import OncePerPeer
from services.transport.loop import LoopSocket, make_dealer

from .config import WorkerConfig
from .engine_client import EngineClient
from .faults import hog_memory
from .jobs import Job, JobsMixin
from .ledger import Ledger, default_path
from .metrics import WorkerMetrics
from .sabotage import malformed_frames

log = logging.getLogger("mock-worker")
BURST = 64  # frames handled back to back before the receive loop lets the tick loop run


class Worker(JobsMixin):
    """Worker state machine: loading → registering → ready/busy/unhealthy → draining → exit."""

    def __init__(self, cfg: WorkerConfig, metrics: WorkerMetrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or WorkerMetrics()
        self.ctx = zmq.Context()
        self.sock: LoopSocket | None = None
        self.engine = EngineClient(self.on_engine_line, self.on_engine_exit)
        self.models: list[str] = []
        self.jobs: dict[int, Job] = {}
        self.keys: dict[tuple[str, int], int] = {}
        self._next_key = 0
        self.faults: dict = dict(cfg.faults)
        self.crash_budget: int | None = self.faults.get("crash_after_tokens")
        self.loaded = False
        self.registered = False
        self.ever_registered = False
        self.draining = False
        self.stopped = asyncio.Event()
        self.hive = Liveness(cfg.interval_s, cfg.liveness)
        self.backoff = Backoff()
        self.next_ready_at = 0.0
        self.ready_since: float | None = None  # first READY on the current connection still unanswered
        self._ready_fut: asyncio.Future | None = None
        self.session = ""  # random per connection: a READY resent on it is recognised as a repeat
        self.once = OncePerPeer()
        self._oom_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self.stall: StallClock | None = None
        self.ledger = Ledger(cfg.ledger_path or default_path(cfg.worker_id), cfg.worker_id,
                             self.metrics.ledger_errors.inc)
        self.last_finished: dict | None = None  # REQUEST of the last job whose FINAL went out
        self.replay_after_reconnect: dict | None = None  # what dup_final_after_reconnect runs again

    # ---- state -------------------------------------------------------------------------------

    @property
    def hung(self) -> bool:
        """True while the hang fault silences the worker."""
        return bool(self.faults.get("hang"))

    @property
    def free_slots(self) -> int:
        """Return the number of idle slots."""
        return max(0, self.cfg.slots - len(self.jobs))

    @property
    def state(self) -> str:
        """Return the worker state as announced to the hive."""
        if self.draining:
            return "draining"
        if self.faults.get("unhealthy"):
            return "unhealthy"
        return "busy" if not self.free_slots else "ready"

    def ready_reason(self) -> str | None:
        """Return why the worker cannot serve, or None when it can."""
        if self.draining:
            return "draining"
        if not self.loaded:
            return "model loading"
        if not self.registered:
            return "not registered with hive"
        if self.faults.get("unhealthy"):
            return "unhealthy (fault)"
        return None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Start the engine, load the model, then serve until stopped."""
        await self.engine.start()
        self.connect()
        self._tasks.append(asyncio.ensure_future(self.tick_loop()))
        await self.load_model(self.cfg.model)
        await self.stopped.wait()

    def connect(self) -> None:
        """(Re)create the DEALER to the hive, read by on_frames."""
        if self.sock is not None:
            self.sock.close(linger=0)  # also cancels a READY still waiting for the connection
        self.sock = LoopSocket(make_dealer(self.ctx, self.cfg.worker_id, self.cfg.hive_addr, self.cfg.interval_s,
                                           self.hive.expiry_s, self.cfg.curve, "hive"),
                               self.on_frames, burst=BURST, name="hive")
        self.session = secrets.token_hex(8)
        self.ready_since = None
        self._ready_fut = None

    async def load_model(self, model: str) -> None:
        """Simulate loading a model, then announce it (CAPACITY when already registered)."""
        if self.faults.get("oom") == "on_load":
            self.start_oom()
        if self.cfg.load_time_s:
            await asyncio.sleep(self.cfg.load_time_s)
        if model not in self.models:
            self.models.append(model)
        self.loaded = True
        log.info("model loaded", extra={"event": "model_loaded", "model": model})
        if self.registered:
            self.send_capacity()

    async def drain(self, grace_s: float, reason: str) -> None:
        """Stop taking jobs, finish in-flight ones within the grace, hand back the rest, DISCONNECT, exit."""
        if self.draining:
            return
        self.draining = True
        log.info("draining", extra={"event": "draining", "reason": reason, "in_flight": len(self.jobs)})
        self.send_capacity()
        deadline = time.monotonic() + grace_s
        while self.jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for job in list(self.jobs.values()):
            self.engine.send({"op": "cancel", "k": job.key})
            self.end_job(job, "handed_back")
            self.send(p.ERROR, p.error_body(p.SHUTTING_DOWN, "worker shutting down", job.job_id, job.attempt))
        self.send(p.DISCONNECT, {"reason": "shutdown"})
        await asyncio.sleep(0.05)  # let the io thread flush the last frames
        await self.engine.stop()
        for task in self._tasks:
            task.cancel()
        if self.sock is not None:
            self.sock.close(linger=200)
        self.ctx.term()
        self.ledger.close()
        log.info("stopped", extra={"event": "stopped"})
        self.stopped.set()

    def request_stop(self, reason: str) -> None:
        """Begin a graceful drain (SIGTERM/SIGINT)."""
        asyncio.ensure_future(self.drain(self.cfg.grace_s, reason))

    # ---- hive link ---------------------------------------------------------------------------

    def send(self, command: bytes, body: dict) -> bool:
        """Send one frame to the hive unless hung; count drops; True when the frame was queued."""
        if self.hung or self.sock is None:
            return False
        if not self.sock.send(p.encode(command, body)):
            self.metrics.dropped.inc()
            return False
        return True

    def send_capacity(self) -> None:
        """Announce our state, free slots and models."""
        self.send(p.CAPACITY, {"worker_id": self.cfg.worker_id, "free_slots": self.free_slots,
                               "state": self.state, "models": self.models})

    def send_ready(self) -> None:
        """Send READY to register with the hive; it waits for the connection (one at a time)."""
        if self.hung or self.sock is None or (self._ready_fut is not None and not self._ready_fut.done()):
            return
        self._ready_fut = self.sock.send_when_connected(p.encode(p.READY, {
            "role": "worker", "id": self.cfg.worker_id, "session": self.session, "model": self.cfg.model,
            "models": self.models, "slots": self.cfg.slots, "free_slots": self.free_slots, "state": self.state}))

    def retry_registration(self, now: float) -> None:
        """Resend READY when due, on a fresh DEALER once one went unanswered for an expiry (half-open link).

        Resends are never closer than the heartbeat interval.
        """
        if now < self.next_ready_at:
            return
        if self.ready_since is not None and now - self.ready_since >= self.hive.expiry_s:
            log.info("no READY ack from the hive; reconnecting",
                     extra={"event": "hive_reconnect", "waited_s": round(now - self.ready_since, 3)})
            self.connect()
        self.send_ready()
        if self.ready_since is None:
            self.ready_since = now
        self.next_ready_at = now + max(self.cfg.interval_s, self.backoff.next_delay())

    async def tick_loop(self) -> None:
        """Heartbeat the hive, detect its loss and retry registration; runs every interval/4.

        A late tick means our own loop (or process) was stalled: that time is credited to the hive
        instead of counting as its silence, and the heartbeat goes out before the check.
        """
        interval = self.cfg.interval_s
        stall = self.stall = StallClock(interval / 4)
        next_beat = 0.0
        while True:
            await asyncio.sleep(interval / 4)
            late = stall.tick()
            if self.sock is not None:
                self.sock.kick()  # a safety net against a lost edge of ZeroMQ's FD
            if self.hung or self.draining and not self.registered:
                continue
            now = time.monotonic()
            if self.registered:
                if now >= next_beat:
                    self.send(p.HEARTBEAT, {"free_slots": self.free_slots, "state": self.state})
                    next_beat = now + interval
                if late:
                    self.hive.credit(late)
                    if late >= self.hive.expiry_s / 2:
                        log.warning("event loop stalled; not counting it as hive silence",
                                    extra={"event": "loop_stalled", "stalled_s": round(late, 3)})
                if self.hive.expired():
                    self.lose_hive("silent")
            elif self.loaded:
                self.retry_registration(now)

    def lose_hive(self, reason: str) -> None:
        """Cancel running jobs, recreate the socket and re-register after a backoff delay."""
        log.warning("hive lost", extra={"event": "hive_lost", "reason": reason, "in_flight": len(self.jobs)})
        self.registered = False
        for job in list(self.jobs.values()):
            self.engine.send({"op": "cancel", "k": job.key})
            self.end_job(job, "cancelled")
        if self.last_finished is not None:  # a second loss before re-registering keeps the first candidate
            self.replay_after_reconnect, self.last_finished = self.last_finished, None
        self.connect()
        self.next_ready_at = time.monotonic() + max(self.cfg.interval_s, self.backoff.next_delay())

    def on_frames(self, frames: list) -> None:
        """Decode one message from the hive and handle it (called by the LoopSocket)."""
        if self.hung:
            return
        self.hive.touch()
        try:
            msg = p.decode(frames)
        except p.ProtocolError as exc:
            self.metrics.protocol_errors.labels(exc.code).inc()
            if self.once.first("hive", exc.code):
                log.warning("bad frame from hive", extra={"event": "protocol_error", "reason": exc.reason})
            self.send(p.ERROR, p.error_body(exc.code, exc.reason))
            return
        self.handle(msg.command, msg.body)

    def handle(self, command: bytes, body: dict) -> None:
        """Act on one decoded frame from the hive."""
        if command == p.REQUEST:
            self.start_job(body)
        elif command == p.HEARTBEAT:
            pass
        elif command == p.CANCEL:
            self.cancel_job(body["job_id"], body["attempt"])
        elif command == p.READY:
            self.on_registered()
        elif command == p.DISCONNECT:
            if not self.draining:
                self.lose_hive(f"disconnect: {body['reason']}")
        elif command == p.PROVISION:
            asyncio.ensure_future(self.load_model(body["model"]))
        elif command == p.SHUTDOWN:
            grace = body.get("grace_s")
            asyncio.ensure_future(self.drain(float(grace) if isinstance(grace, (int, float)) else self.cfg.grace_s,
                                             "shutdown"))
        elif command == p.ERROR:
            if self.once.first("hive-error", body["code"]):
                log.warning("hive rejected a frame", extra={"event": "hive_error", "code": body["code"],
                                                            "msg_text": body["message"]})
        else:
            self.send(p.ERROR, p.error_body(p.UNKNOWN_COMMAND, f"{p.COMMAND_NAMES[command]} not expected by a worker"))

    def on_registered(self) -> None:
        """Handle the hive's READY ack (a second ack, for a READY resent on the same session, changes nothing)."""
        if self.registered:
            return
        first = not self.ever_registered
        self.registered = self.ever_registered = True
        self.ready_since = None
        self.backoff.reset()
        log.info("registered", extra={"event": "registered", "hive": self.cfg.hive_addr})
        if self.faults.get("unhealthy"):
            self.send_capacity()
        if first:
            self.apply_side_effects({}, self.faults)
        replay, self.replay_after_reconnect = self.replay_after_reconnect, None
        if replay is not None and not first and self.faults.get("dup_final_after_reconnect"):
            self.replay_job(replay)

    def replay_job(self, request: dict) -> None:
        """The deliberate bug: run a job already finished before the hive link was lost again (FINAL twice)."""
        log.warning("re-running a finished job after reconnecting (dup_final_after_reconnect)",
                    extra={"event": "dup_final_replay", "job_id": request["job_id"], "trace_id": request["trace_id"],
                           "attempt": request["attempt"]})
        self.start_job(dict(request))

    # ---- faults ------------------------------------------------------------------------------

    def set_faults(self, faults: dict) -> None:
        """Replace the whole fault set (already validated) and apply its immediate effects."""
        old, self.faults = self.faults, dict(faults)
        for name in faults:
            self.metrics.faults_applied.labels(name).inc()
        log.warning("faults set", extra={"event": "faults_set", "faults": p.dumps(faults).decode()})
        if old.get("hang") and not self.hung:
            self.hive.touch()  # let the next beat decide; the hive DISCONNECTs us if it forgot us
            self.send(p.HEARTBEAT, {"free_slots": self.free_slots, "state": self.state})
        if bool(old.get("unhealthy")) != bool(faults.get("unhealthy")) and self.registered:
            self.send_capacity()
        self.apply_side_effects(old, faults)

    def apply_side_effects(self, old: dict, faults: dict) -> None:
        """Trigger one-shot faults: crash budget, malformed frame, oom now."""
        if "crash_after_tokens" in faults:
            self.crash_budget = faults["crash_after_tokens"]
            if self.crash_budget <= 0:
                self.crash()
        else:
            self.crash_budget = None
        kind = faults.get("malformed_frame")
        if kind and self.sock is not None and not self.hung:
            self.sock.send(malformed_frames(kind))
            log.warning("malformed frame sent", extra={"event": "malformed_frame_sent", "kind": kind})
        if faults.get("oom") == "now":
            self.start_oom()

    def start_oom(self) -> None:
        """Begin allocating memory until killed (or the local cap exits 137)."""
        if self._oom_task is None:
            self._oom_task = asyncio.ensure_future(hog_memory(self.faults.get("oom_limit_mb")))

    def crash(self) -> None:
        """Exit abruptly with the configured code, just after the last relayed frame leaves."""
        code = int(self.faults.get("exit_code", 1))
        self.faults["hang"] = True  # nothing more goes out
        log.error("crashing", extra={"event": "crash", "exit_code": code})
        asyncio.get_running_loop().call_later(0.05, os._exit, code)
