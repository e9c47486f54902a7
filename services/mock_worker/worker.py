"""The mock worker: registers with its hive, relays engine tokens as PARTIAL/FINAL frames, applies fault knobs.

This file holds its state, lifecycle, hive link and faults; jobs.py how it runs jobs (mixed into Worker).
The hive link (READY, heartbeats, loss, reconnect, dispatch) is an UpstreamPeer (services/common/peer.py).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

import zmq

from services import protocol as p
from services.common.logs import OncePerPeer
from services.common.peer import UpstreamPeer

from .config import WorkerConfig
from .engine_client import EngineClient
from .faults import hog_memory
from .jobs import Job, JobsMixin
from .ledger import Ledger, default_path
from .metrics import WorkerMetrics
from .sabotage import malformed_frames

log = logging.getLogger("mock-worker")


class Worker(JobsMixin):
    """Worker state machine: loading → registering → ready/busy/unhealthy → draining → exit."""

    def __init__(self, cfg: WorkerConfig, metrics: WorkerMetrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or WorkerMetrics()
        self.ctx = zmq.Context()
        self.engine = EngineClient(self.on_engine_line, self.on_engine_exit)
        self.models: list[str] = []
        self.jobs: dict[int, Job] = {}
        self.keys: dict[tuple[str, int], int] = {}
        self._next_key = 0
        self.faults: dict = dict(cfg.faults)
        self.crash_budget: int | None = self.faults.get("crash_after_tokens")
        self.loaded = False
        self.ever_registered = False
        self.draining = False
        self.stopped = asyncio.Event()
        self.peer = UpstreamPeer(
            self.ctx, identity=cfg.worker_id, address=cfg.hive_addr, role="worker", upstream="hive", event="hive",
            interval_s=cfg.interval_s, liveness=cfg.liveness, curve=cfg.curve, log=log,
            handlers=self.hive_handlers(), ready_fields=self.ready_fields, heartbeat_fields=self.heartbeat_fields,
            on_registered=self.on_registered, on_lost=self.on_hive_lost, on_bad_frame=self.count_bad_frame,
            on_drop=self.metrics.dropped.inc, muted=lambda: self.hung,
            may_register=lambda: self.loaded and not self.draining, silence="hive",
            on_shutdown=lambda grace: self.drain(grace, "shutdown"), grace_s=cfg.grace_s)
        self.once = OncePerPeer()
        self._oom_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self.ledger = Ledger(cfg.ledger_path or default_path(cfg.worker_id), cfg.worker_id,
                             self.metrics.ledger_errors.inc)
        self.last_finished: dict | None = None  # REQUEST of the last job whose FINAL went out
        self.replay_after_reconnect: dict | None = None  # what dup_final_after_reconnect runs again

    # ---- state -------------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        """True while the hive has acknowledged our READY on the current connection."""
        return self.peer.registered

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
        self.peer.connect()
        self._tasks.append(asyncio.ensure_future(self.peer.tick_loop()))
        await self.load_model(self.cfg.model)
        await self.stopped.wait()

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
        self.peer.close(linger=200)
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
        return self.peer.send(command, body)

    def send_capacity(self) -> None:
        """Announce our state, free slots and models."""
        self.send(p.CAPACITY, {"worker_id": self.cfg.worker_id, "free_slots": self.free_slots,
                               "state": self.state, "models": self.models})

    def ready_fields(self) -> dict:
        """Return our READY's fields beyond role, id and session."""
        return {"model": self.cfg.model, "models": self.models, "slots": self.cfg.slots,
                "free_slots": self.free_slots, "state": self.state}

    def heartbeat_fields(self) -> dict:
        """Return the HEARTBEAT body: free slots and state."""
        return {"free_slots": self.free_slots, "state": self.state}

    def on_hive_lost(self, reason: str) -> None:
        """Cancel running jobs (the peer then reconnects and re-registers after a backoff delay)."""
        log.warning("hive lost", extra={"event": "hive_lost", "reason": reason, "in_flight": len(self.jobs)})
        for job in list(self.jobs.values()):
            self.engine.send({"op": "cancel", "k": job.key})
            self.end_job(job, "cancelled")
        if self.last_finished is not None:  # a second loss before re-registering keeps the first candidate
            self.replay_after_reconnect, self.last_finished = self.last_finished, None

    def count_bad_frame(self, exc: p.ProtocolError) -> None:
        """Count a malformed frame from the hive and log it once per reason (the peer answers it with ERROR)."""
        self.metrics.protocol_errors.labels(exc.code).inc()
        if self.once.first("hive", exc.code):
            log.warning("bad frame from hive", extra={"event": "protocol_error", "reason": exc.reason})

    def hive_handlers(self) -> dict:
        """Return {command: handler(body, frames)} for the hive's frames (READY, HEARTBEAT, SHUTDOWN, ERROR: the peer's)."""
        return {p.REQUEST: self.on_request, p.CANCEL: self.on_cancel, p.DISCONNECT: self.on_disconnect,
                p.PROVISION: self.on_provision}

    def on_request(self, body: dict, frames: list) -> None:
        """Run a job."""
        self.start_job(body)

    def on_cancel(self, body: dict, frames: list) -> None:
        """Stop a job."""
        self.cancel_job(body["job_id"], body["attempt"])

    def on_disconnect(self, body: dict, frames: list) -> None:
        """The hive forgot us: reconnect and re-register, unless draining."""
        if not self.draining:
            self.peer.lose(f"disconnect: {body['reason']}")

    def on_provision(self, body: dict, frames: list) -> None:
        """Load another model."""
        asyncio.ensure_future(self.load_model(body["model"]))

    def on_registered(self) -> None:
        """After the hive's READY ack (the peer ignores a second one, for a READY resent on the same session)."""
        first = not self.ever_registered
        self.ever_registered = True
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
            self.peer.liveness.touch()  # let the next beat decide; the hive DISCONNECTs us if it forgot us
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
        if kind and self.peer.sock is not None and not self.hung:
            self.peer.send_frames(malformed_frames(kind), count=False)
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
