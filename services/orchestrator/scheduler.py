"""Jobs: admission, queueing, least-loaded dispatch, cancellation, deadlines, reset.

What becomes of an attempt once dispatched (tokens, errors, lost workers, re-dispatch) is in attempts.py.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time

from services.protocol import CANCEL, REQUEST
from .attempts import AttemptsMixin
from .jobs import RUNNING, Job

log = logging.getLogger("orchestrator.scheduler")

_BUCKET = {"queued": 1, "dispatched": 2, "running": 2}


class AdmissionError(Exception):
    """A job that cannot be accepted: HTTP status, error code and message (+ headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Scheduler(AttemptsMixin):
    """Owns every job; the cluster calls on_partial/on_final/on_job_error/worker_lost/worker_available."""

    def __init__(self, settings, metrics, events, registry, cluster):
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self.registry = registry
        self.cluster = cluster
        self.jobs: dict[str, Job] = {}
        self.finished: collections.deque[str] = collections.deque()
        self.queues: dict[str, collections.deque[Job]] = {}
        self.idem: dict[tuple[str, str], tuple[str, str]] = {}
        self.active = 0          # accepted and not terminal (admission bound)
        self.n_queued = 0
        self.inflight = 0
        self.admitting = True
        self.rr = 0
        self._prefix = secrets.token_hex(4)
        self._counter = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    # ---- admission --------------------------------------------------------------------------------
    def new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{self._prefix}{self._counter:010x}{secrets.token_hex(3)}"

    def admit(self, tenant: str, model: str, prompt: str, max_tokens: int, seed: int, stream: bool,
              trace_id: str, kind: str, timeout_s: float) -> Job:
        """Accept a job (or raise AdmissionError) and dispatch it at once when a worker has a free slot."""
        if not self.admitting:
            raise AdmissionError(503, "shutting_down", "the orchestrator is shutting down; not accepting jobs",
                                 {"retry-after": "1"})
        if not self.cluster.model_known(model):
            raise AdmissionError(404, "model_not_found", f"The model '{model}' does not exist")
        if self.active >= self.settings.queue_max:
            self.metrics.job_finished("throttled")
            raise AdmissionError(429, "queue_full", f"too many jobs queued or running ({self.active}); retry later",
                                 {"retry-after": "1"})
        loop = self.loop or asyncio.get_running_loop()
        job = Job(self.new_id(kind), tenant, model, prompt, max_tokens, seed, stream, trace_id, kind,
                  timeout_s, loop)
        self.jobs[job.id] = job
        self.active += 1
        job.timer = loop.call_later(timeout_s, self._deadline, job)
        self.events.publish("job.accepted", job_id=job.id, trace_id=trace_id, model=model, tenant=tenant)
        self.registry.put("jobs", job.id, job.row())
        worker = self.pick_worker(model, None)
        if worker is not None:
            self.dispatch(job, worker)
        else:
            self._enqueue(job, front=False)
        return job

    # ---- state bookkeeping ------------------------------------------------------------------------
    def _move(self, job: Job, state: str, **extra) -> None:
        prev = _BUCKET.get(job.state, 0)
        new = _BUCKET.get(state, 0)
        if prev != new:
            if prev == 1:
                self.n_queued -= 1
            elif prev == 2:
                self.inflight -= 1
            if new == 1:
                self.n_queued += 1
            elif new == 2:
                self.inflight += 1
        job.transition(state, **extra)

    def _enqueue(self, job: Job, front: bool, **extra) -> None:
        self._move(job, "queued", **extra)
        queue = self.queues.get(job.model)
        if queue is None:
            queue = self.queues[job.model] = collections.deque()
        if front:
            queue.appendleft(job)
        else:
            queue.append(job)

    # ---- dispatch ---------------------------------------------------------------------------------
    def pick_worker(self, model: str, excluded: set[str] | None):
        """Least-loaded ready worker serving `model` (most free slots); ties rotate round-robin."""
        candidates = self.cluster.by_model.get(model)
        if not candidates:
            return None
        n = len(candidates)
        start = self.rr % n
        self.rr += 1
        best, best_free = None, 0
        for i in range(n):
            worker = candidates[(start + i) % n]
            free = worker.free
            if free > best_free and (excluded is None or worker.id not in excluded):
                best, best_free = worker, free
        return best

    def dispatch(self, job: Job, worker) -> None:
        """Send the job's next attempt to `worker` (a send failure is handled as the hive's loss)."""
        job.attempt += 1
        job.worker_id, job.hive_id = worker.id, worker.hive_id
        job.workers.append(worker.id)
        job.next_seq = 0
        job.parts = []
        worker.running[job.id] = job.attempt
        self._move(job, "dispatched", worker_id=worker.id, attempt=job.attempt)
        remaining = max(0.001, job.deadline - (time.monotonic() - job.t0))
        body = {"job_id": job.id, "trace_id": job.trace_id, "worker_id": worker.id, "model": job.model,
                "prompt": job.prompt, "max_tokens": job.max_tokens, "seed": job.seed, "attempt": job.attempt,
                "stream": job.stream, "deadline_s": round(remaining, 3)}
        self.events.publish("job.dispatched", job_id=job.id, trace_id=job.trace_id, worker_id=worker.id,
                            hive_id=worker.hive_id, attempt=job.attempt)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job dispatched", extra={"event": "job.dispatched", "job_id": job.id,
                                               "trace_id": job.trace_id, "worker_id": worker.id})
        if not self.cluster.send_to_hive(worker.hive_id, REQUEST, body):
            self.cluster.hive_unreachable(worker.hive_id)

    def worker_available(self, worker) -> None:
        """A worker gained a free slot or became ready: hand it queued jobs of its models."""
        if not self.n_queued:
            return
        for model in worker.models:
            queue = self.queues.get(model)
            skipped = []
            while queue and worker.state == "ready" and worker.free > 0:
                job = queue.popleft()
                if job.state != "queued":
                    continue
                target = worker if not job.excluded or worker.id not in job.excluded else \
                    self.pick_worker(model, job.excluded)
                if target is None:
                    skipped.append(job)
                    continue
                self.dispatch(job, target)
            if skipped:
                queue.extendleft(reversed(skipped))

    # ---- ending jobs ------------------------------------------------------------------------------
    def cancel(self, job: Job, state: str, code: str, message: str) -> None:
        """End a job for the client now; a running attempt gets CANCEL (its slot frees on confirmation)."""
        if job.terminal:
            return
        if job.state in RUNNING:
            worker = self.cluster.workers.get(job.worker_id)
            self.cluster.send_to_hive(job.hive_id, CANCEL, {"job_id": job.id, "attempt": job.attempt,
                                                            "worker_id": job.worker_id, "reason": code})
            if worker is not None and self.loop is not None:
                self.loop.call_later(self.settings.expiry_s * 2 + 1.0, self._force_release, worker, job.id,
                                     job.attempt)
        self.finish(job, state, code, message)

    def _force_release(self, worker, job_id: str, attempt: int) -> None:
        if worker.running.get(job_id) == attempt:
            del worker.running[job_id]
            self.metrics.dropped("cancel_unconfirmed")
            self.worker_available(worker)

    def _deadline(self, job: Job) -> None:
        job.timer = None
        self.cancel(job, "failed", "timeout", f"job {job.id} exceeded its deadline of {job.deadline:g} s")

    def finish(self, job: Job, state: str, code: str | None = None, message: str | None = None) -> None:
        """Make the job terminal, wake its waiters, count, publish and persist it."""
        if job.terminal:
            return
        if code is None:
            self._move(job, state)
        else:
            self._move(job, state, reason=code)
        job.error, job.error_message = code, message
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        self.active -= 1
        self.metrics.job_finished("completed" if state == "completed" else (code or state))
        self.metrics.job_latency.observe(time.monotonic() - job.t0)
        topic = "job.completed" if state == "completed" else ("job.cancelled" if state == "cancelled" else "job.failed")
        self.events.publish(topic, job_id=job.id, trace_id=job.trace_id, worker_id=job.worker_id, hive_id=job.hive_id,
                            reason=code, attempts=job.attempt)
        if code is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("job ended", extra={"event": topic, "job_id": job.id, "trace_id": job.trace_id,
                                          "reason": code})
        self.registry.put("jobs", job.id, job.row())
        if job.sink is not None:
            job.sink.push(("end", None))
        if not job.done.done():
            job.done.set_result(None)
        self.finished.append(job.id)
        if len(self.finished) > self.settings.finished_jobs_max:
            old = self.jobs.pop(self.finished.popleft(), None)
            if old is not None and old.idem is not None:
                self.idem.pop(old.idem, None)

    def fail_all(self, code: str, message: str) -> int:
        """Fail every queued or running job (reset, shutdown); return how many."""
        victims = [job for job in self.jobs.values() if not job.terminal]
        for job in victims:
            self.cancel(job, "failed", code, message)
        for queue in self.queues.values():
            queue.clear()
        return len(victims)

    def reset(self) -> int:
        """Admin reset: fail live jobs with `reset`, forget finished jobs and idempotency keys."""
        count = self.fail_all("reset", "job cancelled by an administrative reset")
        self.jobs.clear()
        self.finished.clear()
        self.idem.clear()
        self.registry.forget_jobs()
        return count
