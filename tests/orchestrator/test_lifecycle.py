"""Process lifecycle: SIGTERM and admin shutdown exit 0, restart recovery, corrupt/unwritable registry, events,
provisioning."""
from __future__ import annotations

import signal
import threading
import time

import requests
import zmq

from services import protocol as p
from .fakes import FakeHive, Orch, wait_until


def submit(orch, out, **kw):
    try:
        out.append(_post(orch, kw))
    except requests.ConnectionError as exc:
        out.append(exc)


def _post(orch, kw):
    return (orch.post("/v1/completions", {"model": kw.pop("model", "tinyllama"), "prompt": "x", "max_tokens": 2,
                                             **kw}))


def next_event(sub, topic, timeout_s=3.0):
    """Return the next event with `topic`, skipping others."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sub.poll(50):
            event = p.decode_event(sub.recv_multipart())
            if event["topic"] == topic:
                return event
    raise AssertionError(f"no {topic} event within {timeout_s}s")


def test_sigterm_drains_fails_rest_and_exits_zero(tmp_path):
    orch = Orch(tmp_path, APIARY_SHUTDOWN_GRACE_S="0.5").start()
    hive = FakeHive(orch.router, "h-term", [{"id": "t-w1", "mode": "hang"}]).start()
    try:
        out = []
        t = threading.Thread(target=submit, args=(orch, out))
        t.start()
        wait_until(lambda: hive.requests, 3, "job running")
        t0 = time.monotonic()
        assert orch.stop(signal.SIGTERM) == 0
        assert time.monotonic() - t0 < 5
        t.join(3)
        assert out[0].status_code == 503 and out[0].json()["error"]["code"] == "shutting_down"
        assert orch.log_event("orchestrator.drained")["failed_jobs"] == 1
    finally:
        hive.stop(graceful=False)
        orch.stop()


def test_admin_shutdown_cascades_and_exits_zero(tmp_path):
    orch = Orch(tmp_path).start()
    hive = FakeHive(orch.router, "h-shut", [{"id": "s-w1"}]).start()
    try:
        r = orch.post("/v1/admin/shutdown", key="key-admin")
        assert r.status_code == 202
        wait_until(lambda: hive.commands("SHUTDOWN"), 2, "SHUTDOWN at the hive")
        late = orch.post("/v1/completions", {"model": "tinyllama", "prompt": "x"})
        assert late.status_code in (503,) or late.status_code is None
        assert orch.proc.wait(5) == 0
    except requests.ConnectionError:
        assert orch.proc.wait(5) == 0
    finally:
        hive.stop(graceful=False)
        orch.stop()


def test_restart_fails_unfinished_jobs_and_hives_reregister(tmp_path):
    orch = Orch(tmp_path).start()
    hive = FakeHive(orch.router, "h-rs", [{"id": "rs-w1", "mode": "hang"}]).start()
    out = []
    t = threading.Thread(target=submit, args=(orch, out))
    t.start()
    wait_until(lambda: hive.requests, 3, "job running")
    job_id = hive.requests[0]["job_id"]
    time.sleep(0.1)  # let the write-behind flush the accepted job
    orch.proc.kill()
    orch.proc.wait(5)
    t.join(5)
    again = Orch(tmp_path, db_path=orch.db_path)
    again.http_port, again.url = orch.http_port, orch.url
    again.env.update(APIARY_HTTP_PORT=str(orch.http_port),
                     APIARY_ROUTER_BIND=orch.router)  # the hive reconnects to the same endpoint
    try:
        again.start()
        assert again.log_event("orchestrator.started")["jobs_failed_on_restart"] == 1
        job = again.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "failed" and job["error"]["code"] == "orchestrator_restarted"
        assert job["error"]["message"] == "the orchestrator restarted before the job finished"
        assert job["history"][-1]["reason"] == "orchestrator_restarted"
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"hive.")
        sub.connect(again.events)
        wait_until(lambda: hive.ready_acks >= 2, 5, "hive re-registered after DISCONNECT not_registered")
        workers = again.get("/v1/workers").json()
        assert [h["state"] for h in workers["hives"] if h["id"] == "h-rs"] == ["ready"]
        hive.paused = True
        paused_at = time.monotonic()
        assert next_event(sub, "hive.lost")["hive_id"] == "h-rs"
        assert time.monotonic() - paused_at < 1.0  # detection within a second
        hive.paused = False
        event = next_event(sub, "hive.registered")
        assert event["hive_id"] == "h-rs" and event["recovered"] is True
        sub.close(0)
    finally:
        hive.stop(graceful=False)
        again.stop()


def test_corrupt_registry_is_moved_aside_and_service_starts(tmp_path):
    db = tmp_path / "data" / "registry.db"
    db.parent.mkdir()
    db.write_bytes(b"garbage" * 1000)
    orch = Orch(tmp_path, db_path=db).start()
    try:
        event = orch.log_event("registry.corrupt")
        assert event and event["level"] == "error" and ".corrupt-" in event["moved_to"]
        assert requests.get(orch.url + "/health").json()["registry"] == "ok"
        assert list(db.parent.glob("registry.db.corrupt-*"))
    finally:
        orch.stop()


def test_unwritable_registry_keeps_serving(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    orch = Orch(tmp_path, db_path=blocker / "registry.db").start()
    hive = FakeHive(orch.router, "h-ro", [{"id": "ro-w1"}]).start()
    try:
        health = requests.get(orch.url + "/health").json()
        assert health["status"] == "ok" and "registry unavailable" in health["registry"]
        assert orch.post("/v1/completions", {"model": "tinyllama", "prompt": "x"}).status_code == 200
        assert orch.metric("apiary_registry_errors_total") >= 1
        assert len([e for e in orch.logs() if e.get("event") == "registry.error"]) == 1  # logged once
    finally:
        hive.stop()
        orch.stop()


def test_events_and_provisioning(tmp_path):
    orch = Orch(tmp_path).start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(orch.events)
    time.sleep(0.2)  # slow joiner
    hive = FakeHive(orch.router, "h-ev", [{"id": "ev-w1"}]).start()
    events = []

    def collect(until_topic, timeout=3):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sub.poll(100):
                events.append(p.decode_event(sub.recv_multipart()))
                if events[-1]["topic"] == until_topic:
                    return events[-1]
        raise AssertionError(f"no {until_topic} event; got {[e['topic'] for e in events]}")
    try:
        assert collect("worker.registered")["worker_id"] == "ev-w1"
        r = orch.post("/v1/completions", {"model": "tinyllama", "prompt": "x", "max_tokens": 1})
        done = collect("job.completed")
        assert done["job_id"] == r.json()["id"] and done["trace_id"] and done["worker_id"] == "ev-w1"
        topics = [e["topic"] for e in events]
        assert topics.index("job.accepted") < topics.index("job.dispatched") < topics.index("job.completed")
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs)
        # provisioning: 202, PROVISION at the hive, progress in /v1/models and as events, then available
        r = orch.post("/v1/models/provision", {"model": "llama-big", "size_bytes": 1000})
        assert r.status_code == 202 and r.json()["hives"] == ["h-ev"]
        wait_until(lambda: hive.commands("PROVISION"), 2, "PROVISION at the hive")
        assert collect("model.provisioning")["model"] == "llama-big"
        hive.send(p.PROGRESS, {"model": "llama-big", "state": "downloading", "bytes": 500, "total": 1000})
        assert collect("model.progress")["bytes"] == 500
        model = [m for m in orch.get("/v1/models").json()["data"] if m["id"] == "llama-big"][0]
        assert model["state"] == "provisioning" and model["progress"]["h-ev"]["bytes"] == 500
        queued = []
        t = threading.Thread(target=submit, args=(orch, queued), kwargs={"model": "llama-big"})
        t.start()  # known (provisioning) model: accepted, waits for a worker
        hive.send(p.PROGRESS, {"model": "llama-big", "state": "ready", "bytes": 1000, "total": 1000})
        collect("model.ready")
        hive.send(p.CAPACITY, {"worker_id": "ev-w1", "free_slots": 4, "state": "ready",
                               "models": ["tinyllama", "llama-big"]})
        t.join(5)
        assert queued[0].status_code == 200
        model = [m for m in orch.get("/v1/models").json()["data"] if m["id"] == "llama-big"][0]
        assert model["state"] == "available" and model["workers"] == ["ev-w1"]
    finally:
        sub.close(0)
        hive.stop()
        orch.stop()
