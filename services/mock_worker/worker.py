"""The mock worker: registers with its hive, relays engine tokens as PARTIAL/FINAL frames, applies fault knobs."""
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
from .metrics import WorkerMetrics
from .sabotage import malformed_frames

log = logging.getLogger("mock-worker")
BURST = 64  # frames handled back to back before the receive loop lets the tick loop run


class Job:
    """One running job: ids, streaming mode and timing."""

    __slots__ = ("key", "job_id", "attempt", "trace_id", "stream", "received", "first_token", "tokens", "parts")

    def __init__(self, key: int, body: dict, now: float):
        self.key = key
        self.job_id = body["job_id"]
        self.attempt = body["attempt"]
        self.trace_id = body["trace_id"]
        self.stream = bool(body.get("stream"))
        self.received = now
        self.first_token = 0.0
        self.tokens = 0
        self.parts: list[str] = []


class Worker:
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
                                           self.hive.expiry_s), self.on_frames, burst=BURST, name="hive")
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
        log.info("stopped", extra={"event": "stopped"})
        self.stopped.set()

    def request_stop(self, reason: str) -> None:
        """Begin a graceful drain (SIGTERM/SIGINT)."""
        asyncio.ensure_future(self.drain(self.cfg.grace_s, reason))

    # ---- hive link ---------------------------------------------------------------------------

    def send(self, command: bytes, body: dict) -> None:
        """Send one frame to the hive unless hung; count drops."""
        if self.hung or self.sock is None:
            return
        if not self.sock.send(p.encode(command, body)):
            self.metrics.dropped.inc()

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

    # ---- jobs --------------------------------------------------------------------------------

    def start_job(self, body: dict) -> None:
        """Accept a REQUEST and hand it to the engine, or refuse it with ERROR."""
        job_id, attempt = body["job_id"], body["attempt"]
        refusal = self.refusal(body)
        if refusal:
            code, message, extra = refusal
            self.metrics.jobs(code).inc()
            self.send(p.ERROR, {**p.error_body(code, message, job_id, attempt), **extra})
            log.info("job refused", extra={"event": "job_refused", "job_id": job_id,
                                           "trace_id": body["trace_id"], "code": code})
            return
        if self.faults.get("oom") == "on_job":
            self.start_oom()
        key = self._next_key = self._next_key + 1
        job = Job(key, body, time.monotonic())
        rate = self.faults.get("tokens_per_s", self.cfg.tokens_per_s)
        if not self.engine.send({"op": "start", "k": key, "p": body["prompt"], "s": body["seed"],
                                 "n": body["max_tokens"], "r": rate}):
            self.metrics.jobs("worker_error").inc()
            self.send(p.ERROR, p.error_body(p.WORKER_ERROR, "engine unavailable", job_id, attempt))
            return
        self.jobs[key] = job
        self.keys[(job_id, attempt)] = key
        log.debug("job started", extra={"event": "job_started", "job_id": job_id, "trace_id": job.trace_id})

    def refusal(self, body: dict) -> tuple[str, str, dict] | None:
        """Return (code, message, extra ERROR fields) when a new job must be refused.

        Lack of a free slot is told apart (`reason: no_free_slot` with our `free_slots`): the
        orchestrator then waits for a slot instead of counting an attempt or avoiding this worker.
        """
        if self.draining:
            return p.SHUTTING_DOWN, "worker is draining", {}
        if "reject" in self.faults:
            return p.REJECTED, self.faults["reject"], {}
        if "error" in self.faults:
            return p.WORKER_ERROR, self.faults["error"], {}
        if body["model"] not in self.models:
            return p.REJECTED, f"model {body['model']!r} not loaded on {self.cfg.worker_id}", {}
        if (body["job_id"], body["attempt"]) in self.keys:
            return p.REJECTED, "job attempt already running", {}
        if not self.free_slots:
            return p.REJECTED, "no free slot", {"reason": "no_free_slot", "free_slots": self.free_slots}
        return None

    def cancel_job(self, job_id: str, attempt: int) -> None:
        """Ask the engine to stop a job; the engine's confirmation yields ERROR cancelled."""
        key = self.keys.get((job_id, attempt))
        if key is None:
            self.send(p.ERROR, p.error_body(p.CANCELLED, "job not running", job_id, attempt))
            return
        self.engine.send({"op": "cancel", "k": key})

    def end_job(self, job: Job, outcome: str) -> None:
        """Forget a job and count its outcome."""
        self.jobs.pop(job.key, None)
        self.keys.pop((job.job_id, job.attempt), None)
        self.metrics.jobs(outcome).inc()
        if self.draining is False and outcome != "completed":
            log.info("job ended", extra={"event": "job_" + outcome, "job_id": job.job_id, "trace_id": job.trace_id})

    def on_engine_line(self, line: dict) -> None:
        """Relay one engine output line (a token and/or the job's end)."""
        job = self.jobs.get(line["k"])
        if job is None:
            return
        text = line.get("t")
        if text is not None:
            self.relay_token(job, line["i"], text)
        end = line.get("end")
        if end == "length":
            self.finish_job(job)
        elif end == "cancelled":
            self.end_job(job, "cancelled")
            self.send(p.ERROR, p.error_body(p.CANCELLED, "job cancelled", job.job_id, job.attempt))

    def relay_token(self, job: Job, index: int, text: str) -> None:
        """Send a token as PARTIAL (streamed) or keep it for FINAL; honour crash_after_tokens."""
        if self.hung:
            return
        if not job.tokens:
            job.first_token = time.monotonic()
        job.tokens += 1
        self.metrics.tokens.inc()
        if job.stream:
            self.send(p.PARTIAL, {"job_id": job.job_id, "attempt": job.attempt, "seq": index, "text": text})
        else:
            job.parts.append(text)
        if self.crash_budget is not None:
            self.crash_budget -= 1
            if self.crash_budget <= 0:
                self.crash()

    def finish_job(self, job: Job) -> None:
        """Send FINAL with token count and timings."""
        if self.hung:
            return
        now = time.monotonic()
        body = {"job_id": job.job_id, "attempt": job.attempt, "tokens": job.tokens, "finish_reason": "length",
                "timings": {"queue_ms": 0.0,
                            "first_token_ms": round(((job.first_token or now) - job.received) * 1000, 3),
                            "total_ms": round((now - job.received) * 1000, 3)}}
        if not job.stream:
            body["text"] = "".join(job.parts)
        self.end_job(job, "completed")
        self.send(p.FINAL, body)

    def on_engine_exit(self, code: int | None) -> None:
        """Fail every running job with worker_error and restart the engine."""
        for job in list(self.jobs.values()):
            self.end_job(job, "worker_error")
            self.send(p.ERROR, p.error_body(p.WORKER_ERROR, f"engine exited with code {code}",
                                            job.job_id, job.attempt))
        if not self.draining:
            asyncio.ensure_future(self.engine.restart())

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
