"""Hives and workers joining, reporting and leaving: READY, WORKER, CAPACITY and HEARTBEAT bodies, losses."""
from __future__ import annotations

import logging
import time

from services.protocol import MAX_SLOTS, READY, WORKER_STATES, dumps
from .peers import Hive, Worker

log = logging.getLogger("orchestrator.cluster")  # part of the cluster: its records keep the cluster's logger
SCHEDULABLE = frozenset({"ready", "busy"})


class MembershipMixin:
    """Cluster methods that keep the hive/worker table current; mixed into Cluster, which owns the state."""

    # ---- registration and reports -------------------------------------------------------------------
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
            self.by_identity[identity] = hive  # it may have spoken as another hive since: now for this one again
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
        state = entry.get("state")
        if not isinstance(worker_id, str) or not isinstance(model, str) or not _is_int(slots) \
                or not 1 <= slots <= MAX_SLOTS or (state is not None and state not in WORKER_STATES):
            self._protocol_error(identity, "bad_body", f"a worker needs string id and model, 1 <= slots <= "
                                                       f"{MAX_SLOTS} and a state in {WORKER_STATES}")
            return None
        models = [m for m in models if isinstance(m, str)]
        if self._same_session(hive, entry):  # a repeat of the registration in force: nothing changes
            return self.workers[worker_id]
        state = "ready" if state is None or state in SCHEDULABLE else state
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
        if body["state"] not in WORKER_STATES:  # "lost" or "left" here would bypass worker_gone and strand its jobs
            self._protocol_error(identity, "bad_body", f"CAPACITY state must be one of {WORKER_STATES}")
            return
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


def _json_list(items) -> str:
    return dumps(list(items)).decode()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
