"""The worker's jobs: accepting REQUEST/CANCEL, relaying the engine's lines as PARTIAL/FINAL/ERROR, and the ledger."""
from __future__ import annotations

import asyncio
import logging
import time

from services import protocol as p

log = logging.getLogger("mock-worker")  # part of the worker: its records keep the worker's logger


class Job:
    """One running job: ids, streaming mode and timing."""

    __slots__ = ("key", "job_id", "attempt", "trace_id", "stream", "received", "first_token", "tokens", "parts",
                 "request")

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
        self.request = body  # the REQUEST body: the prompt for the ledger, and what a replay runs again


class JobsMixin:
    """Worker methods that run jobs; mixed into Worker, which owns the state they use.

    Relies on the Worker's cfg, metrics, engine, models, faults, draining, hung, free_slots, crash_budget,
    jobs, keys, _next_key, ledger and last_finished, and on its send, start_oom and crash.
    """

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
        self.note(job, "start")
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

    def note(self, job: Job, event: str, **extra) -> None:
        """Append a start/finish/abort entry for the job to the worker's ledger."""
        self.ledger.record(event, job.job_id, job.attempt, job.request.get("prompt", ""), job.tokens, **extra)

    def end_job(self, job: Job, outcome: str) -> None:
        """Forget a job, count its outcome and, unless it completed (see finish_job), ledger it as aborted."""
        if self.jobs.pop(job.key, None) is not None and outcome != "completed":
            self.note(job, "abort", reason=outcome)
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
        """Send FINAL with token count and timings; ledger it as finished (then aborted if the FINAL was refused)."""
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
        self.note(job, "finish")  # before the send: a kill can never leave a FINAL out without its line
        if self.send(p.FINAL, body):
            self.last_finished = job.request
        else:
            self.note(job, "abort", reason="final_not_sent")

    def on_engine_exit(self, code: int | None) -> None:
        """Fail every running job with worker_error and restart the engine."""
        for job in list(self.jobs.values()):
            self.end_job(job, "worker_error")
            self.send(p.ERROR, p.error_body(p.WORKER_ERROR, f"engine exited with code {code}",
                                            job.job_id, job.attempt))
        if not self.draining:
            asyncio.ensure_future(self.engine.restart())
