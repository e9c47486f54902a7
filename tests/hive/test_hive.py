"""Hive tests: a real `python -m services.worker_manager` between a fake orchestrator and fake workers."""
from __future__ import annotations

import hashlib
import signal
import time

import pytest

from services import protocol as p
from services.protocol_malformed import CATALOGUE
from services.worker_manager.provision import expected_sha256

from .fakes import CutProxy, FakeOrchestrator, FakeWorker, HiveProcess, http, wait_until


def request_body(job_id: str, worker_id: str, attempt: int = 1) -> dict:
    """Return a REQUEST body for a job."""
    return {"job_id": job_id, "trace_id": "t-" + job_id, "worker_id": worker_id, "model": "tinyllama",
            "prompt": "hi", "max_tokens": 2, "seed": 1, "attempt": attempt, "stream": True}


@pytest.fixture
def orch():
    o = FakeOrchestrator()
    yield o
    o.close()


@pytest.fixture
def spawn(orch, tmp_path):
    procs: list[HiveProcess] = []
    workers: list[FakeWorker] = []

    def start(**env) -> HiveProcess:
        h = HiveProcess(orch.addr, str(tmp_path / "models"), **env)
        procs.append(h)
        return h

    def worker(h: HiveProcess, worker_id: str, **kw) -> FakeWorker:
        w = FakeWorker(h.worker_addr, worker_id, **kw)
        workers.append(w)
        return w
    start.worker = worker
    yield start
    for w in workers:
        w.close()
    for h in procs:
        log = h.stop()
        assert "Traceback" not in log, log[-3000:]


def test_registers_with_ack_and_ready(orch, spawn):
    h = spawn()
    ident, ready = orch.register()
    assert ident == b"hive-t" and ready["role"] == "hive" and ready["id"] == "hive-t"
    assert ready["workers"] == [] and ready["models"] == []
    h.wait_http()
    status, body = h.get("/ready")
    assert status == 503 and body["reason"] == "no ready worker"
    w = spawn.worker(h, "w1")
    assert w.register()["role"] == "hive"
    _, joined = orch.expect(p.WORKER)
    assert joined == {"worker_id": "w1", "event": "joined", "session": None, "model": "tinyllama",
                      "models": ["tinyllama"], "slots": 2, "free_slots": 2, "state": "ready"}
    assert wait_until(lambda: h.get("/ready")[0] == 200, 2, "/ready never turned 200")
    _, beat = orch.expect(p.HEARTBEAT, where=lambda b: "w1" in b.get("workers", {}))
    assert set(beat["workers"]["w1"]) == {"age_s", "free_slots", "state"}
    assert h.get("/v1/workers")[1]["workers"][0]["id"] == "w1"


def test_forwards_both_ways(orch, spawn):
    h = spawn()
    ident, _ = orch.register()
    w = spawn.worker(h, "w1")
    w.register()
    orch.expect(p.WORKER)
    orch.send(ident, p.REQUEST, request_body("j1", "w1"))
    assert w.expect(p.REQUEST)["job_id"] == "j1"
    w.send(p.PARTIAL, {"job_id": "j1", "attempt": 1, "seq": 0, "text": " a"})
    w.send(p.FINAL, {"job_id": "j1", "attempt": 1, "tokens": 1})
    assert orch.expect(p.PARTIAL)[1] == {"job_id": "j1", "attempt": 1, "seq": 0, "text": " a"}
    assert orch.expect(p.FINAL)[1]["tokens"] == 1
    w.send(p.PARTIAL, {"job_id": "j1", "attempt": 1, "seq": 1, "text": " late"})  # after FINAL: stale
    w.send(p.CAPACITY, {"worker_id": "w1", "free_slots": 0, "state": "busy", "models": ["tinyllama", "m2"]})
    assert orch.expect(p.CAPACITY)[1]["models"] == ["tinyllama", "m2"]
    assert h.metric("apiary_dropped_messages_total", 'reason="stale"') == 1
    assert h.metric("apiary_hive_jobs_forwarded_total") == 1
    orch.send(ident, p.REQUEST, request_body("j2", "nobody"))
    _, err = orch.expect(p.ERROR)
    assert err["code"] == p.WORKER_LOST and err["job_id"] == "j2"


def test_worker_loss_detected_within_one_second(orch, spawn):
    h = spawn(APIARY_HEARTBEAT_LIVENESS="4")  # the documented default: 0.8 s expiry
    orch.register()
    w = spawn.worker(h, "w1")
    w.register()
    orch.expect(p.WORKER)
    w.expect(p.HEARTBEAT)  # w heartbeats while waiting
    silent_at = time.monotonic()
    _, lost = orch.expect(p.WORKER, where=lambda b: b["event"] == "lost")
    assert lost["worker_id"] == "w1" and lost["reason"]
    assert time.monotonic() - silent_at < 1.0
    assert h.get("/v1/workers")[1]["workers"] == []


def test_ready_repeating_the_session_is_only_acknowledged(orch, spawn):
    """A worker resending READY on its session (slow ack) is acknowledged again, not announced twice; its job stays."""
    h = spawn()
    ident, ready = orch.register()
    assert isinstance(ready["session"], str) and ready["session"]
    w = spawn.worker(h, "w1")
    w.register(session="s1")
    _, joined = orch.expect(p.WORKER)
    assert joined["event"] == "joined" and joined["session"] == "s1"
    orch.send(ident, p.REQUEST, request_body("j1", "w1"))
    w.expect(p.REQUEST)
    assert w.register(session="s1")["role"] == "hive"  # the repeat is acknowledged
    w.send(p.FINAL, {"job_id": "j1", "attempt": 1, "tokens": 2})
    seen: list = []
    orch.expect(p.FINAL, seen=seen)  # the job was still tracked: its FINAL is relayed
    assert not [b for _, c, b in seen if c == p.WORKER], "the repeated READY was announced upstream"
    w.register(session="s2")  # a new connection of the worker: a re-registration
    _, again = orch.expect(p.WORKER)
    assert again["event"] == "joined" and again["session"] == "s2"


def test_unregistered_worker_gets_disconnect(orch, spawn):
    h = spawn()
    orch.register()
    w = spawn.worker(h, "ghost")
    w.send(p.HEARTBEAT, {"free_slots": 1})
    assert w.expect(p.DISCONNECT, beat=False)["reason"] == p.NOT_REGISTERED
    w.register()  # and it can then register
    assert orch.expect(p.WORKER)[1]["worker_id"] == "ghost"


def test_upstream_loss_reconnects_and_reregisters(orch, spawn):
    h = spawn()
    ident, _ = orch.register()
    w = spawn.worker(h, "w1")
    w.register()
    orch.expect(p.WORKER)
    orch.send(ident, p.REQUEST, request_body("j1", "w1"))
    w.expect(p.REQUEST)
    orch.close()  # the orchestrator dies
    cancel = w.expect(p.CANCEL, timeout_s=5)
    assert cancel == {"job_id": "j1", "attempt": 1}
    orch.open()  # and comes back on the same port
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        w.send(p.HEARTBEAT, {"free_slots": 2})
        got = orch.recv(0.1)
        if got and got[1] == p.READY:
            break
    else:
        raise AssertionError("hive never re-registered")
    assert [x["id"] for x in got[2]["workers"]] == ["w1"]
    orch.send(got[0], p.READY, {"role": "orchestrator", "id": "fake-orch"})
    orch.peers.add(got[0])
    assert wait_until(lambda: h.get("/ready")[0] == 200 or w.send(p.HEARTBEAT, {}), 3, "hive not ready again")


def test_disconnect_from_upstream_reregisters(orch, spawn):
    spawn()
    ident, _ = orch.register()
    orch.send(ident, p.DISCONNECT, {"reason": p.NOT_REGISTERED})
    ident, ready = orch.register()
    assert ready["id"] == "hive-t"


def test_provisioning_verifies_shares_and_loads(orch, spawn, tmp_path):
    h = spawn(APIARY_DOWNLOAD_BYTES_PER_S="4000000", APIARY_MODEL_SIZE_BYTES="1000000")
    ident, _ = orch.register()
    w = spawn.worker(h, "w1")
    w.register()
    for _ in range(3):
        orch.send(ident, p.PROVISION, {"model": "llama-x"})
    seen: list = []
    orch.expect(p.PROGRESS, where=lambda b: b["state"] == "ready", seen=seen, timeout_s=5)
    states = [b["state"] for _, c, b in seen if c == p.PROGRESS]
    assert states[0] == "downloading" and "verifying" in states and states.count("ready") == 1
    assert 3 <= states.count("downloading") <= 12
    assert h.get("/v1/models")[1]["downloads_started"] == 1
    data = (tmp_path / "models" / "llama-x.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected_sha256("llama-x", 1_000_000)
    assert w.expect(p.PROVISION) == {"model": "llama-x"}
    orch.send(ident, p.PROVISION, {"model": "llama-x"})  # cached: ready at once
    _, body = orch.expect(p.PROGRESS, timeout_s=1)
    assert body["state"] == "ready"
    assert h.get("/v1/models")[1]["cached"] == ["llama-x"]


def test_corrupt_download_is_detected_and_retried(orch, spawn):
    h = spawn(APIARY_DOWNLOAD_BYTES_PER_S="20000000", APIARY_MODEL_SIZE_BYTES="500000")
    ident, _ = orch.register()
    h.wait_http()
    assert http("PUT", h.url + "/faults", {"corrupt_downloads": {"m-bad": 1}})[0] == 200
    orch.send(ident, p.PROVISION, {"model": "m-bad"})
    seen: list = []
    orch.expect(p.PROGRESS, where=lambda b: b["state"] == "ready", seen=seen)
    retry = [b for _, c, b in seen if c == p.PROGRESS and b["state"] == "retry"]
    assert len(retry) == 1 and retry[0]["attempt"] == 1 and "checksum" in retry[0]["message"]
    assert h.get("/v1/models")[1]["downloads_started"] == 2
    assert h.metric("apiary_hive_downloads_total", 'outcome="corrupt"') == 1
    status, body = http("PUT", h.url + "/faults", {"corrupt_everything": True})
    assert status == 400 and body["error"]["field"] == "corrupt_everything"
    assert http("PUT", h.url + "/faults", {})[1] == {}


def test_malformed_frames_counted_and_service_keeps_serving(orch, spawn):
    h = spawn()
    ident, _ = orch.register()
    w = spawn.worker(h, "w1")
    w.register()
    orch.expect(p.WORKER)
    for kind in ("bad_version", "unknown_command", "bad_json", "wrong_frame_count", "too_large"):
        w.send_raw(list(CATALOGUE[kind].frames))
        assert w.expect(p.ERROR)["code"] == CATALOGUE[kind].code, kind
    orch.sock.send_multipart([ident, p.HEADER, p.REQUEST, b'{"job_id": 5}'])
    assert orch.expect(p.ERROR)[1]["code"] == p.BAD_BODY
    for reason in (p.UNSUPPORTED_VERSION, p.UNKNOWN_COMMAND, p.BAD_FRAME, p.TOO_LARGE):
        assert h.metric("apiary_protocol_errors_total", f'reason="{reason}"') == 1
    assert h.metric("apiary_protocol_errors_total", f'reason="{p.BAD_BODY}"') == 2
    orch.send(ident, p.REQUEST, request_body("ok", "w1"))
    assert w.expect(p.REQUEST)["job_id"] == "ok"


def test_shutdown_cascades(orch, spawn):
    h = spawn()
    ident, _ = orch.register()
    w = spawn.worker(h, "w1")
    w.register()
    orch.expect(p.WORKER)
    orch.send(ident, p.SHUTDOWN, {"grace_s": 2})
    assert w.expect(p.SHUTDOWN)["grace_s"] == 2
    w.send(p.DISCONNECT, {"reason": "shutdown"})
    assert orch.expect(p.WORKER, where=lambda b: b["event"] == "left")[1]["worker_id"] == "w1"
    orch.expect(p.DISCONNECT)
    assert h.proc.wait(5) == 0


def test_sigterm_exits_zero(orch, spawn):
    h = spawn(APIARY_SHUTDOWN_GRACE_S="0.2")
    orch.register()
    h.wait_http()
    h.proc.send_signal(signal.SIGTERM)
    orch.expect(p.DISCONNECT)
    assert h.proc.wait(5) == 0


def test_dealer_link_bounds_connect_handshake_and_silence():
    """The DEALER of every link gives up a hanging connect, handshake or silent connection within seconds."""
    import zmq
    import zmq.asyncio

    from services.transport.loop import make_dealer
    ctx = zmq.asyncio.Context()
    try:
        sock = make_dealer(ctx, "hive-x", "tcp://127.0.0.1:9", interval_s=0.2, expiry_s=0.8)
        assert sock.getsockopt(zmq.CONNECT_TIMEOUT) == 1000
        assert sock.getsockopt(zmq.HANDSHAKE_IVL) == 2400
        assert sock.getsockopt(zmq.HEARTBEAT_IVL) == 200
        assert sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 2400
        assert sock.getsockopt(zmq.HEARTBEAT_TTL) == 2400
        assert sock.getsockopt(zmq.TCP_KEEPALIVE) == 1 and sock.getsockopt(zmq.TCP_KEEPALIVE_IDLE) == 1
        sock.close(linger=0)
    finally:
        ctx.term()


def test_registers_soon_after_a_partition_heals(orch, spawn):
    """A connection attempt made during a partition never completes; once healed the hive registers in seconds."""
    proxy = CutProxy(orch.port, cut=True)
    try:
        spawn(APIARY_ORCHESTRATOR_ADDR=proxy.addr, APIARY_HEARTBEAT_LIVENESS="4")
        wait_until(lambda: proxy.accepted >= 1, 10, "the hive never tried to connect")
        time.sleep(1.5)  # READY retries into the cut link
        proxy.heal()
        healed_at = time.monotonic()
        _, ready = orch.register(timeout_s=10)
        assert ready["id"] == "hive-t"
        assert time.monotonic() - healed_at < 5.0, "registration took too long after the heal"
    finally:
        proxy.close()
