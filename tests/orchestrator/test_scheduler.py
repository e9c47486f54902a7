"""Scheduler unit tests in-process: least-loaded spread, re-dispatch, stale attempts, bounded attempts."""
from __future__ import annotations

import asyncio
import collections
import time

from services import protocol as p
from services.orchestrator.config import Settings
from services.orchestrator.service import Orchestrator


class Harness:
    """An Orchestrator without sockets: frames go in through cluster.handle, sends are recorded."""

    def __init__(self, tmp_path, **settings):
        self.orch = Orchestrator(Settings(db_path=str(tmp_path / "r.db"), **settings))
        self.sent: list[tuple[bytes, bytes, dict]] = []
        self.orch.cluster.send = self._send
        self.orch.registry.open()
        self.orch.scheduler.loop = asyncio.get_running_loop()

    def _send(self, identity, command, body=None):
        self.sent.append((identity, command, body or {}))
        return True

    def frame(self, hive: str, command: bytes, body: dict) -> None:
        self.orch.cluster.handle([hive.encode(), *p.encode(command, body)])

    def register(self, hive: str, workers: list[tuple[str, int]], model="m") -> None:
        self.frame(hive, p.READY, {"role": "hive", "id": hive, "models": [], "workers": [
            {"id": w, "model": model, "models": [model], "slots": slots, "state": "ready"} for w, slots in workers]})

    def requests(self) -> list[dict]:
        return [body for _, cmd, body in self.sent if cmd == p.REQUEST]

    def admit(self, stream=False, prompt="x"):
        return self.orch.scheduler.admit("t", "m", prompt, 3, 0, stream, "trace", "completion", 30)

    def close(self):
        self.orch.registry.close()


def run(coro_fn, tmp_path, **settings):
    async def main():
        h = Harness(tmp_path, **settings)
        try:
            await coro_fn(h)
        finally:
            h.close()
    asyncio.run(main())


def test_least_loaded_and_round_robin_spread(tmp_path):
    async def body(h):
        h.register("h1", [("a", 4), ("b", 4)])
        h.register("h2", [("c", 4), ("d", 4)])
        jobs = [h.admit() for _ in range(8)]
        per_worker = collections.Counter(r["worker_id"] for r in h.requests())
        assert per_worker == {"a": 2, "b": 2, "c": 2, "d": 2}
        assert all(j.state == "dispatched" for j in jobs)
        # finish two jobs on "a": it becomes the least loaded and gets the next job
        for job in jobs:
            if job.worker_id == "a":
                h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": 1, "tokens": 3, "text": "t"})
        h.admit()
        assert h.requests()[-1]["worker_id"] == "a"
    run(body, tmp_path)


def test_queue_when_full_then_dispatch_on_free_slot(tmp_path):
    async def body(h):
        h.register("h1", [("a", 1)])
        first, second = h.admit(), h.admit()
        assert first.state == "dispatched" and second.state == "queued"
        assert h.orch.scheduler.n_queued == 1 and h.orch.scheduler.inflight == 1
        h.frame("h1", p.FINAL, {"job_id": first.id, "attempt": 1, "tokens": 3, "text": "abc"})
        assert first.state == "completed" and first.text == "abc"
        assert second.state == "dispatched" and h.orch.scheduler.n_queued == 0
    run(body, tmp_path)


def test_redispatch_on_worker_lost_and_stale_attempt_dropped(tmp_path):
    async def body(h):
        h.register("h1", [("a", 4), ("b", 4)])
        job = h.admit()
        first = job.worker_id
        other = "b" if first == "a" else "a"
        h.frame("h1", p.WORKER, {"worker_id": first, "event": "lost", "reason": "heartbeat expired"})
        assert job.attempt == 2 and job.worker_id == other and job.state == "dispatched"
        assert h.requests()[-1]["attempt"] == 2 and h.orch.metrics.value("apiary_redispatches_total") == 1
        h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": 1, "tokens": 3, "text": "stale"})
        assert job.state == "dispatched"
        assert h.orch.metrics.value("apiary_dropped_messages_total", {"reason": "stale_attempt"}) == 1
        h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": 2, "tokens": 3, "text": "fresh"})
        assert job.state == "completed" and job.text == "fresh"
        states = [e["state"] for e in job.history]
        assert states == ["accepted", "dispatched", "queued", "dispatched", "running", "completed"]
    run(body, tmp_path)


def test_bounded_attempts(tmp_path):
    async def body(h):
        h.register("h1", [("a", 4), ("b", 4), ("c", 4)])
        job = h.admit()
        for _ in range(2):
            h.frame("h1", p.WORKER, {"worker_id": job.worker_id, "event": "lost", "reason": "x"})
        assert job.state == "failed" and job.error == "worker_lost" and job.attempt == 2
        assert job.done.done()
    run(body, tmp_path, max_attempts=2)


def test_streamed_job_after_token_fails_instead_of_redispatch(tmp_path):
    async def body(h):
        h.register("h1", [("a", 4), ("b", 4)])
        job = h.admit(stream=True)
        h.frame("h1", p.PARTIAL, {"job_id": job.id, "attempt": 1, "seq": 0, "text": " hi"})
        h.frame("h1", p.PARTIAL, {"job_id": job.id, "attempt": 1, "seq": 0, "text": " dup"})  # duplicate seq
        assert job.parts == [" hi"]
        h.frame("h1", p.WORKER, {"worker_id": job.worker_id, "event": "lost", "reason": "x"})
        assert job.state == "failed" and job.error == "worker_lost" and job.attempt == 1
        assert len(h.requests()) == 1
    run(body, tmp_path)


def test_a_final_after_lost_partials_is_redispatched_never_a_truncated_stream(tmp_path):
    """The 30-minute soak (limit_data on orchestrator|hive-a) got a stream that ended [DONE] with no token: the
    PARTIALs went down with the old connection, the FINAL came through the new one. Nothing was streamed yet:
    the job runs again; after a token was streamed it fails explicitly."""
    async def body(h):
        h.register("h1", [("a", 4), ("b", 4)])
        job = h.admit(stream=True)
        h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": 1, "tokens": 2})      # 2 tokens, 0 PARTIALs seen
        assert job.state == "dispatched" and job.attempt == 2 and not job.parts
        assert h.orch.metrics.value("apiary_dropped_messages_total", {"reason": "partials_lost"}) == 1
        for seq, text in enumerate((" a", " b")):
            h.frame("h1", p.PARTIAL, {"job_id": job.id, "attempt": 2, "seq": seq, "text": text})
        h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": 2, "tokens": 2})
        assert job.state == "completed" and job.text == " a b"
        late = h.admit(stream=True)
        h.frame("h1", p.PARTIAL, {"job_id": late.id, "attempt": 1, "seq": 0, "text": " a"})
        h.frame("h1", p.FINAL, {"job_id": late.id, "attempt": 1, "tokens": 2})     # seq 1 lost after seq 0 streamed
        assert late.state == "failed" and late.error == "worker_lost"
    run(body, tmp_path)


def test_hive_silence_loses_its_workers(tmp_path):
    async def body(h):
        h.register("h1", [("a", 4)])
        h.register("h2", [("b", 4)])
        job = h.admit()
        lost_hive = h.orch.cluster.workers[job.worker_id].hive_id
        h.orch.cluster.liveness._last[lost_hive] -= 10  # silent for 10 s
        h.frame("h2" if lost_hive == "h1" else "h1", p.HEARTBEAT, {})
        task = asyncio.create_task(h.orch.cluster.run_heartbeats())
        await asyncio.sleep(0.2)
        task.cancel()
        assert h.orch.cluster.hives[lost_hive].state == "lost"
        assert job.attempt == 2 and h.orch.cluster.workers[job.worker_id].hive_id != lost_hive
        # the silent hive speaks again: it is told to re-register, and comes back as recovered
        h.frame(lost_hive, p.HEARTBEAT, {})
        assert h.sent[-1][1] == p.DISCONNECT and h.sent[-1][2]["reason"] == "not_registered"
    run(body, tmp_path)


def test_rejected_tries_other_worker_and_cancel_frees_slot(tmp_path):
    async def body(h):
        h.register("h1", [("a", 1), ("b", 1)])
        job = h.admit()
        first = job.worker_id
        h.frame("h1", p.ERROR, {"code": "rejected", "message": "no", "job_id": job.id, "attempt": 1})
        assert job.attempt == 2 and job.worker_id != first
        h.orch.scheduler.cancel(job, "cancelled", "cancelled", "client gone")
        assert h.sent[-1][1] == p.CANCEL and h.sent[-1][2]["attempt"] == 2
        worker = h.orch.cluster.workers[job.worker_id]
        assert job.id in worker.running  # slot held until the worker confirms
        h.frame("h1", p.ERROR, {"code": "cancelled", "message": "ok", "job_id": job.id, "attempt": 2})
        assert job.id not in worker.running
    run(body, tmp_path)


def record_events(h) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    h.orch.events.publish = lambda topic, **fields: events.append((topic, fields))
    return events


def test_repeated_ready_of_a_session_registers_once(tmp_path):
    async def body(h):
        events = record_events(h)

        def ready(hive_session, worker_session):
            h.frame("h1", p.READY, {"role": "hive", "id": "h1", "session": hive_session, "models": [], "workers": [
                {"id": "a", "session": worker_session, "model": "m", "models": ["m"], "slots": 2, "free_slots": 2,
                 "state": "ready"}]})

        def registered():
            return [t for t, _ in events if t in ("hive.registered", "worker.registered")]
        ready("hs1", "ws1")
        assert registered() == ["hive.registered", "worker.registered"]
        job = h.admit()
        assert job.state == "dispatched" and job.attempt == 1
        ready("hs1", "ws1")  # resent while the ack was on its way: acknowledged again, nothing else
        assert [cmd for _, cmd, _ in h.sent].count(p.READY) == 2
        h.frame("h1", p.WORKER, {"worker_id": "a", "event": "joined", "session": "ws1", "model": "m", "slots": 2})
        assert registered() == ["hive.registered", "worker.registered"]
        assert job.state == "dispatched" and job.attempt == 1 and "a" in h.orch.cluster.workers \
            and job.id in h.orch.cluster.workers["a"].running
        # a new worker session is a re-registration: the old session's job is dispatched again
        h.frame("h1", p.WORKER, {"worker_id": "a", "event": "joined", "session": "ws2", "model": "m", "slots": 2})
        assert registered() == ["hive.registered", "worker.registered", "worker.registered"]
        assert job.attempt == 2
        ready("hs2", "ws2")  # a new hive connection: the hive and its workers register again
        assert registered()[-2:] == ["hive.registered", "worker.registered"]
    run(body, tmp_path)


def register_with_free(h, hive: str, worker: str, slots: int, free: int, session: str | None = None) -> None:
    body = {"role": "hive", "id": hive, "models": [], "workers": [
        {"id": worker, "model": "m", "models": ["m"], "slots": slots, "free_slots": free,
         "state": "busy" if free == 0 else "ready"}]}
    if session is not None:
        body["session"] = session
    h.frame(hive, p.READY, body)


def test_registration_takes_the_reported_free_slots(tmp_path):
    async def body(h):
        register_with_free(h, "h1", "a", slots=2, free=0)  # its slots are still busy cancelling old jobs
        job = h.admit()
        assert job.state == "queued" and h.requests() == []
        h.frame("h1", p.HEARTBEAT, {"workers": {"a": {"age_s": 0.01, "free_slots": 1, "state": "ready"}}})
        assert job.state == "dispatched" and h.requests()[-1]["worker_id"] == "a"
        second = h.admit()
        assert second.state == "queued"  # one slot was reported free, and it is taken
        h.frame("h1", p.HEARTBEAT, {"workers": {"a": {"age_s": 0.01, "free_slots": 1, "state": "ready"}}})
        assert second.state == "dispatched"
        assert h.orch.cluster.workers["a"].held == 0
    run(body, tmp_path)


def test_no_free_slot_rejection_waits_for_a_slot_without_using_an_attempt(tmp_path):
    async def body(h):
        register_with_free(h, "h1", "a", slots=1, free=1)
        job = h.admit()
        assert job.state == "dispatched" and job.attempt == 1
        h.frame("h1", p.ERROR, {"code": "rejected", "message": "no free slot", "reason": "no_free_slot",
                                "free_slots": 0, "job_id": job.id, "attempt": 1})
        assert job.state == "queued" and not job.terminal and job.charged == 0
        assert not job.excluded and h.orch.metrics.value("apiary_slot_waits_total") == 1
        h.frame("h1", p.HEARTBEAT, {"workers": {"a": {"age_s": 0.01, "free_slots": 0, "state": "busy"}}})
        assert job.state == "queued"
        h.frame("h1", p.HEARTBEAT, {"workers": {"a": {"age_s": 0.01, "free_slots": 1, "state": "ready"}}})
        assert job.state == "dispatched" and job.attempt == 2 and h.requests()[-1]["worker_id"] == "a"
        h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": 2, "tokens": 3, "text": "ok"})
        assert job.state == "completed"
    run(body, tmp_path, max_attempts=1)


def test_registration_churn_does_not_use_up_attempts(tmp_path):
    async def body(h):
        cluster = h.orch.cluster
        register_with_free(h, "h1", "a", slots=1, free=1, session="s0")
        job = h.admit()
        for n in range(1, 4):  # the hive is dropped as silent and comes back, three times
            cluster.hive_lost(cluster.hives["h1"], "heartbeat_expired")
            assert job.state == "queued" and not job.terminal
            register_with_free(h, "h1", "a", slots=1, free=1, session=f"s{n}")
            assert job.state == "dispatched" and job.attempt == n + 1
        assert job.charged == 0 and job.uncharged == 3
        h.frame("h1", p.FINAL, {"job_id": job.id, "attempt": job.attempt, "tokens": 3, "text": "ok"})
        assert job.state == "completed"
        other = h.admit()  # losses the hive reports for its worker still count
        for _ in range(2):
            h.frame("h1", p.WORKER, {"worker_id": "a", "event": "lost", "reason": "heartbeat expired"})
            register_with_free(h, "h1", "a", slots=1, free=1, session=f"x{_}")
        assert other.state == "failed" and other.error == "worker_lost" and "2 attempts" in other.error_message
    run(body, tmp_path, max_attempts=2)


def test_own_loop_stall_is_not_hive_silence(tmp_path):
    async def body(h):
        import time
        cluster = h.orch.cluster
        h.register("h1", [("a", 2)])
        task = asyncio.create_task(cluster.run_heartbeats())
        try:
            await asyncio.sleep(0.05)
            h.frame("h1", p.HEARTBEAT, {})
            time.sleep(0.5)  # our loop is blocked 2.5 x the expiry (0.2 s): the hive's frames would wait unread
            await asyncio.sleep(0.05)
            assert cluster.hives["h1"].state == "ready", "our own stall was counted as the hive's silence"
            assert cluster.stall.stalls >= 1
            beats = [cmd for _, cmd, _ in h.sent].count(p.HEARTBEAT)
            silent_at = time.monotonic()
            while cluster.hives["h1"].state != "lost" and time.monotonic() - silent_at < 5:
                await asyncio.sleep(0.02)  # a healthy loop still detects a silent hive after the expiry
            assert cluster.hives["h1"].state == "lost"
            assert [cmd for _, cmd, _ in h.sent].count(p.HEARTBEAT) > beats
        finally:
            task.cancel()
    run(body, tmp_path, heartbeat_interval_s=0.05)


def test_router_backlog_does_not_starve_the_loop(tmp_path):
    async def body(h):
        import zmq
        loop = asyncio.get_running_loop()
        ctx = zmq.Context()
        router, ghost = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        try:
            router.bind("tcp://127.0.0.1:*")
            ghost.setsockopt(zmq.ROUTING_ID, b"ghost")
            ghost.connect(router.getsockopt(zmq.LAST_ENDPOINT).decode())
            for _ in range(5000):  # a ROUTER with 5000 frames already queued: every receive completes at once
                ghost.send_multipart(p.encode(p.HEARTBEAT, {}))
            while not router.poll(100):
                pass
            await asyncio.sleep(0.3)  # let the I/O thread move the whole backlog to the ROUTER
            handled = [0]
            handle = h.orch.cluster.handle

            def counting(frames):
                handled[0] += 1
                handle(frames)
            h.orch.cluster.handle = counting
            sock = h.orch.cluster.attach(router)
            seen = []
            loop.call_soon(lambda: seen.append(handled[0]))  # e.g. a heartbeat timer due now
            deadline = time.monotonic() + 5
            while handled[0] < 5000 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            sock.close()
            assert handled[0] == 5000 and seen and seen[0] < 1000, f"the router loop ran {seen} frames first"
        finally:
            ghost.close(0)
            router.close(0)
            ctx.term()
    run(body, tmp_path)
