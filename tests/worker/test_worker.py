"""Mock worker tests: a real `python -m services.mock_worker` against a fake hive built from services.protocol."""
from __future__ import annotations

import signal
import time

import psutil
import pytest

from services import protocol as p
from services.protocol_malformed import CATALOGUE

from .fakes import CutProxy, FakeHive, WorkerProcess, http, wait_until


@pytest.fixture
def hive():
    h = FakeHive()
    yield h
    h.close()


@pytest.fixture
def spawn(hive):
    procs: list[WorkerProcess] = []

    def start(**env) -> WorkerProcess:
        w = WorkerProcess(hive.addr, **env)
        procs.append(w)
        return w
    yield start
    for w in procs:
        log = w.stop()
        assert "Traceback" not in log, log[-3000:]


def test_ready_resent_on_one_session_no_faster_than_heartbeats(hive, spawn):
    """Unanswered READYs carry the connection's session and come at most once per heartbeat interval."""
    spawn(APIARY_HEARTBEAT_INTERVAL_S="0.2")  # liveness 10: 2 s expiry, the connection is kept meanwhile
    readies = []
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        got = hive.recv(0.1)
        if got and got[1] == p.READY:
            readies.append((time.monotonic(), got[2]))
    assert len(readies) >= 3
    sessions = {body.get("session") for _, body in readies}
    assert len(sessions) == 1 and isinstance(sessions.pop(), str)
    gaps = [b[0] - a[0] for a, b in zip(readies, readies[1:])]
    assert min(gaps) >= 0.15, f"READY resent too fast: {gaps}"


def test_registers_and_text_is_deterministic(hive, spawn):
    w = spawn(APIARY_SLOTS="3")
    ident, ready = hive.register()
    assert ident == b"w1"
    assert ready["role"] == "worker" and ready["id"] == "w1" and ready["slots"] == 3
    assert ready["model"] == "tinyllama" and ready["models"] == ["tinyllama"]
    hive.request(ident, "j1", prompt="a quiet meadow", seed=42, max_tokens=12)
    partials, final, command = hive.collect_job("j1")
    assert command == p.FINAL and partials == []
    assert final["text"] == p.generate_text("a quiet meadow", 42, 12)
    assert final["tokens"] == 12 and final["finish_reason"] == "length"
    assert set(final["timings"]) == {"queue_ms", "first_token_ms", "total_ms"}
    w.wait_http()
    assert http("GET", w.url + "/ready")[0] == 200


def test_streaming_frames_in_order(hive, spawn):
    spawn(APIARY_TOKENS_PER_S="500")
    ident, _ = hive.register()
    hive.request(ident, "s1", prompt="bees", seed=3, max_tokens=20, stream=True, attempt=2)
    partials, final, command = hive.collect_job("s1")
    assert command == p.FINAL and final["tokens"] == 20 and final["attempt"] == 2 and "text" not in final
    assert [b["seq"] for b in partials] == list(range(20))
    assert "".join(b["text"] for b in partials) == p.generate_text("bees", 3, 20)
    assert all(b["attempt"] == 2 for b in partials)


def test_many_concurrent_jobs_and_slot_limit(hive, spawn):
    spawn(APIARY_SLOTS="2", APIARY_TOKENS_PER_S="50")
    ident, _ = hive.register()
    for i in range(3):
        hive.request(ident, f"c{i}", max_tokens=5, seed=i)
    ends = {}
    deadline = time.monotonic() + 5
    while len(ends) < 3 and time.monotonic() < deadline:
        got = hive.recv(0.5)
        if got and got[1] in (p.FINAL, p.ERROR):
            ends[got[2]["job_id"]] = got
    assert ends["c2"][1] == p.ERROR and ends["c2"][2]["code"] == p.REJECTED
    assert ends["c2"][2]["reason"] == "no_free_slot" and ends["c2"][2]["free_slots"] == 0  # not a refusal
    assert ends["c0"][2]["text"] == p.generate_text("hello bees", 0, 5)


def test_cancel_stops_engine_job(hive, spawn):
    spawn(APIARY_TOKENS_PER_S="20")
    ident, _ = hive.register()
    hive.request(ident, "k1", max_tokens=200, stream=True)
    hive.expect(p.PARTIAL, where=lambda b: b["job_id"] == "k1" and b["seq"] >= 2)
    hive.send(ident, p.CANCEL, {"job_id": "k1", "attempt": 1})
    _, err = hive.expect(p.ERROR, where=lambda b: b.get("job_id") == "k1")
    assert err["code"] == p.CANCELLED
    later = []
    stop = time.monotonic() + 0.4
    while time.monotonic() < stop:
        got = hive.recv(0.1)
        if got is not None:
            later.append(got)
    assert not [g for g in later if g[1] == p.PARTIAL], "tokens kept coming after the cancel"


def test_crash_after_tokens_exits_with_code(hive, spawn):
    w = spawn(APIARY_TOKENS_PER_S="100")
    ident, _ = hive.register()
    w.wait_http()
    assert w.put_faults({"crash_after_tokens": 3, "exit_code": 7})[0] == 200
    hive.request(ident, "x1", max_tokens=50, stream=True)
    partials = [hive.expect(p.PARTIAL, where=lambda b: b["job_id"] == "x1")[1] for _ in range(3)]
    assert [b["seq"] for b in partials] == [0, 1, 2]
    assert w.wait_exit(5) == 7


def test_hang_stops_heartbeats(hive, spawn):
    w = spawn()
    ident, _ = hive.register()
    hive.expect(p.HEARTBEAT)
    w.wait_http()
    assert w.put_faults({"hang": True})[0] == 200
    time.sleep(0.05)
    hive.recv(0.3)  # a frame already in flight
    assert hive.recv(0.8) is None, "a hung worker still sends frames"
    assert w.proc.poll() is None
    assert w.put_faults({})[0] == 200
    hive.expect(p.HEARTBEAT)


def test_reject_and_error_faults(hive, spawn):
    w = spawn(APIARY_FAULTS='{"reject": "maintenance"}')
    ident, _ = hive.register()
    hive.request(ident, "r1")
    _, body, command = hive.collect_job("r1")
    assert command == p.ERROR and body["code"] == p.REJECTED and body["message"] == "maintenance"
    w.wait_http()
    assert w.put_faults({"error": "gpu on fire"})[0] == 200
    hive.request(ident, "r2")
    _, body, _ = hive.collect_job("r2")
    assert body["code"] == p.WORKER_ERROR and body["message"] == "gpu on fire"
    assert w.put_faults({})[0] == 200
    hive.request(ident, "r3")
    assert hive.collect_job("r3")[2] == p.FINAL
    _, metrics = http("GET", w.url + "/metrics")
    assert 'apiary_worker_faults_applied_total{fault="error"} 1.0' in metrics


def test_unhealthy_toggles_capacity_and_ready(hive, spawn):
    w = spawn()
    ident, _ = hive.register()
    w.wait_http()
    w.put_faults({"unhealthy": True})
    _, cap = hive.expect(p.CAPACITY)
    assert cap["state"] == "unhealthy" and cap["worker_id"] == "w1"
    assert http("GET", w.url + "/health")[0] == 200
    status, body = http("GET", w.url + "/ready")
    assert status == 503 and "unhealthy" in body["reason"]
    w.put_faults({})
    _, cap = hive.expect(p.CAPACITY)
    assert cap["state"] == "ready"
    assert http("GET", w.url + "/ready")[0] == 200


@pytest.mark.parametrize("kind", ["bad_version", "unknown_command", "bad_body", "wrong_frame_count", "too_large",
                                  "bool_integer"])
def test_malformed_frame_fault(hive, spawn, kind):
    code = CATALOGUE[kind].code
    w = spawn()
    ident, _ = hive.register()
    w.wait_http()
    w.put_faults({"malformed_frame": kind})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        frames = hive.recv_raw(0.5)
        if frames is None:
            continue
        try:
            p.decode(frames[1:])
        except p.ProtocolError as exc:
            assert exc.code == code
            return
    raise AssertionError(f"no malformed {kind} frame arrived")


def test_oom_with_local_cap_exits_137(hive, spawn):
    w = spawn()
    hive.register()
    w.wait_http()
    assert w.put_faults({"oom": "now", "oom_limit_mb": 64})[0] == 200
    assert w.wait_exit(10) == 137


def test_faults_validation_names_field(hive, spawn):
    w = spawn()
    w.wait_http()
    status, body = w.put_faults({"explode": True})
    assert status == 400 and body["error"]["field"] == "explode"
    status, body = w.put_faults({"crash_after_tokens": "3"})
    assert status == 400 and body["error"]["field"] == "crash_after_tokens"
    status, body = w.put_faults({"oom": "sometimes"})
    assert status == 400 and body["error"]["field"] == "oom"
    for kind in ("no_frames", "nonsense"):    # no_frames: a DEALER cannot send an empty message
        status, body = w.put_faults({"malformed_frame": kind})
        assert status == 400 and body["error"]["field"] == "malformed_frame", body
        assert "bad_version" in body["error"]["message"] and "no_frames" not in body["error"]["message"], body
    assert http("GET", w.url + "/faults") == (200, {})


def test_engine_death_fails_jobs_and_restarts(hive, spawn):
    w = spawn(APIARY_TOKENS_PER_S="20")
    ident, _ = hive.register()
    hive.request(ident, "e1", max_tokens=100, stream=True)
    hive.expect(p.PARTIAL, where=lambda b: b["job_id"] == "e1")
    engine = wait_until(lambda: psutil.Process(w.proc.pid).children(), 3, "engine subprocess not found")[0]
    engine.kill()
    _, body = hive.expect(p.ERROR, where=lambda b: b.get("job_id") == "e1")
    assert body["code"] == p.WORKER_ERROR

    def served():
        hive.request(ident, "e2", max_tokens=2)
        return hive.collect_job("e2")[2] == p.FINAL
    assert wait_until(served, 5, "worker never served again after the engine restart")


def test_hive_loss_then_reregisters(hive, spawn):
    spawn(APIARY_HEARTBEAT_LIVENESS="4")
    ident, _ = hive.register()
    hive.silent = True  # the hive stops heartbeating: the worker must notice and re-register
    t0 = time.monotonic()
    hive.expect(p.READY, timeout_s=3)
    assert time.monotonic() - t0 < 2.5
    hive.silent = False
    hive.send(ident, p.READY, {"role": "hive", "id": "fake-hive"})
    hive.send(ident, p.DISCONNECT, {"reason": p.NOT_REGISTERED})
    ident, _ = hive.register()
    hive.request(ident, "h1", max_tokens=3)
    assert hive.collect_job("h1")[2] == p.FINAL


def test_sigterm_drains_and_exits_zero(hive, spawn):
    w = spawn(APIARY_TOKENS_PER_S="20")
    ident, _ = hive.register()
    hive.request(ident, "d1", max_tokens=8)
    hive.expect(p.HEARTBEAT)
    w.proc.send_signal(signal.SIGTERM)
    _, cap = hive.expect(p.CAPACITY)
    assert cap["state"] == "draining"
    _, final, command = hive.collect_job("d1")
    assert command == p.FINAL and final["text"] == p.generate_text("hello bees", 7, 8)
    hive.expect(p.DISCONNECT)
    assert w.wait_exit(5) == 0


def test_shutdown_frame_hands_back_unfinished_work(hive, spawn):
    w = spawn(APIARY_TOKENS_PER_S="5")
    ident, _ = hive.register()
    hive.request(ident, "d2", max_tokens=100)
    hive.send(ident, p.SHUTDOWN, {"grace_s": 0.2})
    _, body, command = hive.collect_job("d2")
    assert command == p.ERROR and body["code"] == p.SHUTTING_DOWN
    hive.expect(p.DISCONNECT)
    assert w.wait_exit(5) == 0


def test_registers_soon_after_a_partition_heals(hive, spawn):
    """A connection attempt made during a partition never completes; once healed the worker registers in seconds."""
    proxy = CutProxy(hive.port, cut=True)
    try:
        spawn(APIARY_HIVE_ADDR=proxy.addr, APIARY_HEARTBEAT_LIVENESS="4")
        wait_until(lambda: proxy.accepted >= 1, 10, "the worker never tried to connect")
        time.sleep(1.5)  # READY retries into the cut link
        proxy.heal()
        healed_at = time.monotonic()
        ident, _ = hive.register(timeout_s=10)
        assert ident == b"w1"
        assert time.monotonic() - healed_at < 5.0, "registration took too long after the heal"
    finally:
        proxy.close()
