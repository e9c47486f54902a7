"""What becomes of a dispatched attempt: its tokens, FINAL or error, its worker's loss, and the retry that follows."""
from __future__ import annotations

import time

from .jobs import RUNNING, Job

KNOWN_OUTCOMES = frozenset({"completed", "cancelled", "timeout", "worker_lost", "worker_error", "rejected",
                            "reset", "shutting_down", "no_capacity"})
# Losses that do not say the job reached a worker which then failed: our own registration churn (a hive
# dropped as silent or unreachable, a re-registration replacing the one the job was sent under) or a hive
# that no longer had the worker.  They re-dispatch without using up an attempt (bounded separately).
UNCHARGED_LOSSES = frozenset({"hive_lost", "hive_left", "reregistered", "not_in_registration",
                              "worker_lost_at_hive", "partials_lost"})
UNCHARGED_FACTOR = 3  # uncharged re-dispatches allowed per max_attempts


class AttemptsMixin:
    """Scheduler methods for frames about attempts and for lost workers; mixed into Scheduler, which owns the jobs."""

    # ---- frames from workers (via the cluster) ----------------------------------------------------
    def _current(self, body: dict, hive) -> Job | None:
        job = self.jobs.get(body["job_id"])
        if job is None or job.terminal or body["attempt"] != job.attempt or job.state not in RUNNING:
            self.metrics.dropped("stale_attempt")
            return None
        return job

    def on_partial(self, body: dict, hive) -> None:
        job = self._current(body, hive)
        if job is None:
            return
        if body["seq"] != job.next_seq:
            self.metrics.dropped("bad_seq")
            return
        job.next_seq += 1
        text = body["text"]
        job.parts.append(text)
        if job.next_seq == 1:
            self._first_token(job)
        if job.stream:
            job.delivered = True
            job.sink.push(("token", text))

    def _first_token(self, job: Job) -> None:
        self._move(job, "running", worker_id=job.worker_id)
        self.metrics.ttft.observe(time.monotonic() - job.t0)
        self.events.publish("job.first_token", job_id=job.id, trace_id=job.trace_id, worker_id=job.worker_id,
                            hive_id=job.hive_id)

    def on_final(self, body: dict, hive) -> None:
        job = self._current(body, hive)
        if job is None:
            self.release(body["job_id"], body["attempt"], hive)
            return
        worker = self._release_current(job)
        if job.stream and body["tokens"] != job.next_seq:
            # PARTIALs lost on the way (a link that broke between them and the FINAL; ZeroMQ reconnects and
            # drops what the old connection held): never complete a truncated stream. Found by the 30-min soak.
            self.metrics.dropped("partials_lost")
            self._lost(job, "partials_lost")
            if worker is not None:
                self.worker_available(worker)
            return
        extra = body.get("text")
        if isinstance(extra, str) and extra:
            job.parts.append(extra)
            if job.stream:
                job.delivered = True
                job.sink.push(("token", extra))
        if job.state == "dispatched":
            self._first_token(job)
        tokens = body["tokens"]
        job.completion_tokens = tokens if tokens >= 0 else 0
        reason = body.get("finish_reason")
        job.finish_reason = reason if isinstance(reason, str) and reason else "length"
        self.finish(job, "completed")
        if worker is not None:
            self.worker_available(worker)

    def on_job_error(self, body: dict, hive) -> None:
        code, message = body["code"], body["message"]
        job = self.jobs.get(body["job_id"])
        attempt = body.get("attempt")
        if job is None or job.terminal or (isinstance(attempt, int) and attempt != job.attempt) \
                or job.state not in RUNNING:
            if not (job is not None and job.terminal and code == "cancelled"):
                self.metrics.dropped("stale_attempt")
            if isinstance(attempt, int):
                self.release(body["job_id"], attempt, hive)
            return
        worker = self._release_current(job)
        if code == "rejected" and body.get("reason") == "no_free_slot":
            free = body.get("free_slots")
            if worker is not None:  # the worker is fuller than we thought: wait for it to report a free slot
                worker.reported_free(free if isinstance(free, int) and not isinstance(free, bool) else 0)
            self._wait_for_slot(job)
        elif code in ("rejected", "shutting_down"):
            if job.excluded is None:
                job.excluded = set()
            job.excluded.add(job.worker_id)
            self._retry_elsewhere(job, code, message)
        elif code in ("cancelled", "worker_lost"):  # the worker stopped or vanished: same as a loss
            if job.excluded is None:
                job.excluded = set()
            job.excluded.add(job.worker_id)
            self._lost(job, "cancelled_by_worker" if code == "cancelled" else "worker_lost_at_hive")
        else:
            self.finish(job, "failed", code if code in KNOWN_OUTCOMES else "worker_error",
                        f"worker {job.worker_id}: {message}")
        if worker is not None:
            self.worker_available(worker)

    def _wait_for_slot(self, job: Job) -> None:
        """A worker had no free slot after all: queue the job again (front) without using up an attempt.

        The worker is not excluded: it gets the job back once it reports a free slot, unless another
        worker has one first.  The job's deadline still applies.
        """
        self.metrics.slot_waits.inc()
        self._redispatch(job, "no_free_slot")

    def _retry_elsewhere(self, job: Job, code: str, message: str) -> None:
        job.charged += 1
        if job.delivered or job.charged >= self.settings.max_attempts or \
                not self.cluster.has_other_worker(job.model, job.excluded):
            self.finish(job, "failed", "rejected", f"every worker refused the job (last: {message})")
            return
        self._redispatch(job, code)

    def _redispatch(self, job: Job, reason: str) -> None:
        """Send the job to the least-loaded worker it may use, or queue it at the front when none has a slot."""
        target = self.pick_worker(job.model, job.excluded)
        if target is not None:
            self._move(job, "queued", reason=reason, worker_id=job.worker_id)
            self.dispatch(job, target)
        else:
            self._enqueue(job, front=True, reason=reason, worker_id=job.worker_id)

    def _release_current(self, job: Job):
        worker = self.cluster.workers.get(job.worker_id)
        if worker is not None and worker.running.get(job.id) == job.attempt:
            del worker.running[job.id]
            return worker
        return None

    def release(self, job_id: str, attempt: int, hive) -> None:
        """Free the slot a finished/stale attempt held on one of `hive`'s workers."""
        if hive is None:
            return
        for worker_id in hive.workers:
            worker = self.cluster.workers.get(worker_id)
            if worker is not None and worker.running.get(job_id) == attempt:
                del worker.running[job_id]
                self.worker_available(worker)
                return

    # ---- losses -----------------------------------------------------------------------------------
    def worker_lost(self, worker, reason: str) -> None:
        """Every job on a lost worker: re-dispatch when nothing was delivered, else fail worker_lost."""
        running, worker.running = worker.running, {}
        for job_id, attempt in running.items():
            job = self.jobs.get(job_id)
            if job is not None and not job.terminal and job.attempt == attempt and job.state in RUNNING:
                self._lost(job, reason)

    def _lost(self, job: Job, reason: str) -> None:
        if reason in UNCHARGED_LOSSES:
            job.uncharged += 1
        else:
            job.charged += 1
        if job.delivered:
            self.finish(job, "failed", "worker_lost",
                        f"worker {job.worker_id} was lost ({reason}) after tokens were streamed")
        elif job.charged >= self.settings.max_attempts:
            self.finish(job, "failed", "worker_lost",
                        f"worker {job.worker_id} was lost ({reason}); {job.charged} attempts exhausted")
        elif job.uncharged > self.settings.max_attempts * UNCHARGED_FACTOR:
            self.finish(job, "failed", "worker_lost",
                        f"worker {job.worker_id} was lost ({reason}); re-dispatched {job.attempt} times")
        else:
            self.metrics.redispatches.inc()
            self.events.publish("job.redispatched", job_id=job.id, trace_id=job.trace_id, worker_id=job.worker_id,
                                hive_id=job.hive_id, reason=reason, attempt=job.attempt + 1)
            self._redispatch(job, reason)
