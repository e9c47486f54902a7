"""Hives and workers as the orchestrator sees them: ROUTER loop, frame handling, heartbeats, liveness sweep."""
from __future__ import annotations

import asyncio
import logging
import time

import zmq

from services.common.heartbeat import PeerLiveness, StallClock
from services.common.logs import OncePerPeer
from services.transport.loop import EHOSTUNREACH, LoopSocket
from services.protocol import (CAPACITY, DISCONNECT, ERROR, FINAL, HEARTBEAT, PARTIAL, PROGRESS, READY, SHUTDOWN,
                               WORKER, ProtocolError, decode, dumps, encode, error_body, split_envelope)
from .models import ModelTable
from .peers import Hive, Worker

log = logging.getLogger("orchestrator.cluster")
SCHEDULABLE = frozenset({"ready", "busy"})
ROUTER_BURST = 64  # frames handled back to back before the router loop lets heartbeats, sweep and HTTP run


class Cluster:
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

    def _on_heartbeat(self, body, hive, identity):
        workers = body.get("workers")
        if isinstance(workers, dict):
            now = time.monotonic()
            for worker_id, info in workers.items():
                worker = self.workers.get(worker_id)
                if worker is not None and isinstance(info, dict) and worker.hive_id == hive.id:
                    age = info.get("age_s")
                    if isinstance(age, (int, float)):
                        worker.age_s, worker.age_at = float(age), now
                    free = info.get("free_slots")
                    if worker.held and _is_int(free) and worker.release_held(free) and worker.state == "ready":
                        self.scheduler.worker_available(worker)

    def _on_ready(self, body, hive, identity):
        """Register (or re-register) a hive with its workers and acknowledge with READY.

        A READY repeating the session of the registered connection (resent while our ack was on its
        way) is acknowledged again and refreshes the worker list, without announcing the hive or its
        already registered workers a second time; a new session is a re-registration.
        """
        if body.get("role") != "hive":
            self._protocol_error(identity, "bad_body", f"READY role must be 'hive', got {body.get('role')!r}")
            return
        hive_id = body["id"]
        entries = body.get("workers") if isinstance(body.get("workers"), list) else []
        session = body.get("session") if isinstance(body.get("session"), str) and body.get("session") else None
        hive = self.hives.get(hive_id)
        if hive is not None and hive.state == "ready" and session is not None and hive.session == session \
                and hive.identity == identity:
            self.liveness.touch(hive_id)
            self.send(identity, READY, {"role": "orchestrator", "id": "orchestrator"})
            self._register_listed(hive, entries, identity)
            return
        recovered = hive is not None and hive.ever_lost
        if hive is None:
            hive = self.hives[hive_id] = Hive(hive_id, identity)
        old = self.by_identity.get(hive.identity)
        if old is hive:
            del self.by_identity[hive.identity]
        hive.identity = identity
        self.by_identity[identity] = hive
        hive.state = "ready"
        hive.session = session
        models = body.get("models")
        hive.models = [m for m in models if isinstance(m, str)] if isinstance(models, list) else []
        self.liveness.touch(hive_id)
        self.hives_gone.clear()
        self.send(identity, READY, {"role": "orchestrator", "id": "orchestrator"})
        self.registry.put("hives", hive_id, (hive_id, "ready", _json_list(hive.models), time.time()))
        self.events.publish("hive.registered", hive_id=hive_id, recovered=recovered,
                            workers=[e.get("id") for e in entries if isinstance(e, dict)])
        log.info("hive registered", extra={"event": "hive.registered", "hive_id": hive_id, "recovered": recovered,
                                           "workers": len(entries)})
        self._register_listed(hive, entries, identity)

    def _register_listed(self, hive: Hive, entries: list, identity: bytes) -> None:
        """Register the workers a hive's READY lists; its workers not listed are lost."""
        listed = set()
        for entry in entries:
            worker = self._register_worker(hive, entry, identity)
            if worker is not None:
                listed.add(worker.id)
        for worker_id in list(hive.workers - listed):
            worker = self.workers.get(worker_id)
            if worker is not None and worker.state not in ("lost", "left"):
                self.worker_gone(worker, "lost", "not_in_registration")
        self.reindex()
        for worker_id in listed:
            self.scheduler.worker_available(self.workers[worker_id])

    def _register_worker(self, hive: Hive, entry, identity) -> Worker | None:
        if not isinstance(entry, dict):
            self._protocol_error(identity, "bad_body", "a worker entry must be an object")
            return None
        worker_id, model, slots = entry.get("id", entry.get("worker_id")), entry.get("model"), entry.get("slots")
        models = entry.get("models") if isinstance(entry.get("models"), list) else []
        if not isinstance(worker_id, str) or not isinstance(model, str) or not isinstance(slots, int) \
                or isinstance(slots, bool) or slots < 1:
            self._protocol_error(identity, "bad_body", "a worker needs string id and model and slots >= 1")
            return None
        models = [m for m in models if isinstance(m, str)]
        if self._same_session(hive, entry):  # a repeat of the registration in force: nothing changes
            return self.workers[worker_id]
        state = entry.get("state", "ready")
        state = "ready" if not isinstance(state, str) or state in SCHEDULABLE else state
        worker = self.workers.get(worker_id)
        recovered = worker is not None and worker.ever_lost
        if worker is None:
            worker = Worker(worker_id, hive.id, model, models, slots)
        else:
            if worker.hive_id != hive.id and worker.hive_id in self.hives:
                self.hives[worker.hive_id].workers.discard(worker_id)
            if worker.running:  # a re-registering worker dropped the jobs of its previous session
                worker.state = "lost"
                self.by_model = {m: [w for w in ws if w is not worker] for m, ws in self.by_model.items()}
                self.scheduler.worker_lost(worker, "reregistered")
            worker.hive_id, worker.model, worker.slots = hive.id, model, slots
            worker.models = list(dict.fromkeys([model, *models]))
        worker.state = state
        session = entry.get("session")
        worker.session = session if isinstance(session, str) and session else None
        worker.hive_session = hive.session
        free = entry.get("free_slots")  # its slots may still be busy cancelling jobs of a previous registration
        worker.held = 0
        if _is_int(free):
            worker.reported_free(free)
        worker.age_s, worker.age_at = 0.0, time.monotonic()
        self.workers[worker_id] = worker
        hive.workers.add(worker_id)
        self.registry.put("workers", worker_id, (worker_id, hive.id, model, _json_list(worker.models), slots,
                                                 worker.state, time.time()))
        self.events.publish("worker.registered", worker_id=worker_id, hive_id=hive.id, model=model, slots=slots,
                            models=worker.models, recovered=recovered)
        return worker

    def _on_worker(self, body, hive, identity):
        event, worker_id = body["event"], body["worker_id"]
        if event == "joined":
            entry = dict(body, id=worker_id)
            if self._same_session(hive, entry):  # announced twice for one session: already registered
                return
            if self._register_worker(hive, entry, identity) is not None:
                log.info("worker joined", extra={"event": "worker.registered", "worker_id": worker_id,
                                                 "hive_id": hive.id})
                self.reindex()
                self.scheduler.worker_available(self.workers[worker_id])
            return
        worker = self.workers.get(worker_id)
        if worker is None or worker.hive_id != hive.id:
            return
        if event in ("lost", "left"):
            reason = body.get("reason") if isinstance(body.get("reason"), str) else event
            self.worker_gone(worker, event, reason)
            self.reindex()
        elif event in ("unhealthy", "healthy"):
            self._set_state(worker, "unhealthy" if event == "unhealthy" else "ready")
        else:
            self._protocol_error(identity, "bad_body", f"unknown WORKER event {event!r}")

    def _same_session(self, hive: Hive, entry: dict) -> bool:
        """True when `entry` repeats the registration in force: same worker session via the same hive session."""
        session = entry.get("session")
        worker = self.workers.get(entry.get("id", entry.get("worker_id")))
        return (worker is not None and isinstance(session, str) and session == worker.session
                and hive.session is not None and worker.hive_session == hive.session
                and worker.hive_id == hive.id and worker.state not in ("lost", "left"))

    def _on_capacity(self, body, hive, identity):
        worker = self.workers.get(body["worker_id"])
        if worker is None or worker.hive_id != hive.id:
            return
        models = body.get("models")
        if isinstance(models, list):
            new = list(dict.fromkeys([m for m in models if isinstance(m, str)] or [worker.model]))
            if new != worker.models:
                worker.models = new
                self.registry.put("workers", worker.id, (worker.id, hive.id, worker.model, _json_list(new),
                                                         worker.slots, worker.state, time.time()))
                self.reindex()
                self.models.worker_models_changed(worker)
        if worker.held:
            worker.release_held(body["free_slots"])
        state = body["state"]
        self._set_state(worker, "ready" if state in SCHEDULABLE else state)
        if worker.state == "ready":
            self.scheduler.worker_available(worker)

    def _set_state(self, worker: Worker, state: str) -> None:
        if worker.state == state or worker.state in ("lost", "left"):
            return
        before, worker.state = worker.state, state
        self.reindex()
        if state == "unhealthy":
            self.events.publish("worker.unhealthy", worker_id=worker.id, hive_id=worker.hive_id)
        elif state == "ready" and before == "unhealthy":
            self.events.publish("worker.healthy", worker_id=worker.id, hive_id=worker.hive_id)
        if state == "ready":
            self.scheduler.worker_available(worker)

    def _on_progress(self, body, hive, identity):
        self.models.progress(hive.id, body)

    def _on_disconnect(self, body, hive, identity):
        self.hive_gone(hive, "left", body.get("reason") if isinstance(body.get("reason"), str) else "disconnect")

    # ---- losses -------------------------------------------------------------------------------------
    def worker_gone(self, worker: Worker, state: str, reason: str) -> None:
        """Mark a worker lost/left (caller reindexes) and re-dispatch or fail its jobs."""
        worker.state = state
        worker.ever_lost = worker.ever_lost or state == "lost"
        self.by_model = {m: [w for w in ws if w is not worker] for m, ws in self.by_model.items()}
        self.registry.put("workers", worker.id, (worker.id, worker.hive_id, worker.model,
                                                 _json_list(worker.models), worker.slots, state, time.time()))
        self.events.publish(f"worker.{state}", worker_id=worker.id, hive_id=worker.hive_id, reason=reason)
        level = logging.WARNING if state == "lost" else logging.INFO
        log.log(level, f"worker {state}", extra={"event": f"worker.{state}", "worker_id": worker.id,
                                              "hive_id": worker.hive_id, "reason": reason})
        self.scheduler.worker_lost(worker, reason)

    def hive_lost(self, hive: Hive, reason: str) -> None:
        self.hive_gone(hive, "lost", reason)

    def hive_gone(self, hive: Hive, state: str, reason: str) -> None:
        """A hive was lost (silence) or left (DISCONNECT): all its workers go with it."""
        if hive.state != "ready":
            return
        hive.state = state
        hive.ever_lost = hive.ever_lost or state == "lost"
        self.liveness.forget(hive.id)
        self.registry.put("hives", hive.id, (hive.id, state, _json_list(hive.models), time.time()))
        self.events.publish(f"hive.{state}", hive_id=hive.id, reason=reason, workers=sorted(hive.workers))
        log.log(logging.WARNING if state == "lost" else logging.INFO, f"hive {state}",
                extra={"event": f"hive.{state}", "hive_id": hive.id, "reason": reason})
        for worker_id in list(hive.workers):
            worker = self.workers.get(worker_id)
            if worker is not None and worker.state not in ("lost", "left"):
                self.worker_gone(worker, state, f"hive_{state}")
        self.reindex()
        if not any(h.state == "ready" for h in self.hives.values()):
            self.hives_gone.set()

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


def _json_list(items) -> str:
    return dumps(list(items)).decode()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
