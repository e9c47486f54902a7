"""Regressions found by the live frame fuzzer (bench/fuzz.py) at a hive ROUTER, replayed with raw frames."""
from __future__ import annotations

import time

import pytest

from services import protocol as p

from .fakes import FakeOrchestrator, FakeWorker, HiveProcess


@pytest.fixture
def hive(tmp_path):
    """A hive registered with a fake orchestrator, its log checked for tracebacks at the end."""
    orch = FakeOrchestrator()
    proc = HiveProcess(orch.addr, str(tmp_path / "models"))
    orch.register()
    proc.wait_http()
    workers: list[FakeWorker] = []

    def worker(worker_id: str) -> FakeWorker:
        w = FakeWorker(proc.worker_addr, worker_id, model="fz-m")
        workers.append(w)
        return w
    yield proc, orch, worker
    for w in workers:
        w.close()
    log = proc.stop()
    orch.close()
    assert "Traceback" not in log, log[-3000:]


def replies(w: FakeWorker, n: int) -> list[tuple[bytes, dict]]:
    got = []
    while len(got) < n and (item := w.recv(2.0)) is not None:
        if item[0] != p.HEARTBEAT:
            got.append(item)
    return got


def upstream(orch: FakeOrchestrator, seconds: float) -> list[tuple[bytes, dict]]:
    """Every (command, body) the hive sends upstream within `seconds`."""
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if (item := orch.recv(left)) is not None:
            got.append(item[1:])
    return got


def test_error_with_a_non_string_job_id_or_attempt_is_dropped_without_a_traceback(hive):
    """ERROR {job_id: {...}} raised TypeError (unhashable) in the relay: a traceback per frame."""
    proc, _, worker = hive
    w = worker("fz-w1")
    w.register()
    stale = proc.metric("apiary_dropped_messages_total", 'reason="stale"')
    w.send(p.ERROR, {"code": "worker_error", "message": "m", "job_id": {"a": 1}})
    w.send(p.ERROR, {"code": "worker_error", "message": "m", "job_id": "j", "attempt": [1]})
    w.send(p.HEARTBEAT, {"free_slots": 1})
    w.send(p.READY, {"role": "worker", "id": "fz-w1", "model": "fz-m", "session": "again"})
    assert replies(w, 1)[0][0] == p.READY  # still serving after both
    assert proc.metric("apiary_dropped_messages_total", 'reason="stale"') == stale + 1


def test_unregistered_and_wrong_direction_frames_are_counted(hive):
    """They were answered (DISCONNECT, ERROR unknown_command) but not counted in apiary_protocol_errors_total."""
    proc, _, worker = hive
    w = worker("fz-w2")
    w.send(p.HEARTBEAT, {})
    assert replies(w, 1) == [(p.DISCONNECT, {"reason": "not_registered"})]
    w.register()
    w.send(p.CANCEL, {"job_id": "j", "attempt": 1})
    assert replies(w, 1)[0][1]["code"] == p.UNKNOWN_COMMAND
    assert proc.metric("apiary_protocol_errors_total", 'reason="not_registered"') == 1
    assert proc.metric("apiary_protocol_errors_total", 'reason="unexpected_command"') == 1


def test_worker_ready_with_slots_or_state_out_of_range_is_rejected_and_not_announced(hive):
    """slots 0 or 2**64-1 and states like "lost" were registered here and announced upstream, where the
    orchestrator refused them (slots) or took them (states): the two tables disagreed."""
    proc, orch, worker = hive
    w = worker("fz-w3")
    base = {"role": "worker", "id": "fz-w3", "model": "fz-m"}
    for extra in ({"slots": 0}, {"slots": 2 ** 64 - 1}, {"slots": True}, {"state": "lost"}, {"state": 3}):
        w.send(p.READY, {**base, **extra})
        assert [(c, b["code"]) for c, b in replies(w, 1)] == [(p.ERROR, p.BAD_BODY)], extra
    assert not [body for cmd, body in upstream(orch, 0.3) if cmd == p.WORKER]  # nothing announced upstream
    assert proc.metric("apiary_protocol_errors_total", 'reason="bad_body"') == 5
    assert proc.get("/v1/workers")[1]["workers"] == []


def test_heartbeat_and_capacity_with_a_state_outside_the_protocol_are_rejected(hive):
    """A HEARTBEAT or CAPACITY state like "bogus" became the worker's state (and was forwarded upstream)."""
    proc, orch, worker = hive
    w = worker("fz-w4")
    w.register()
    w.send(p.HEARTBEAT, {"free_slots": 1, "state": "bogus"})
    w.send(p.CAPACITY, {"worker_id": "fz-w4", "free_slots": 1, "state": "lost"})
    assert [(c, b["code"]) for c, b in replies(w, 2)] == [(p.ERROR, p.BAD_BODY)] * 2
    assert proc.get("/v1/workers")[1]["workers"][0]["state"] == "ready"
    assert proc.metric("apiary_protocol_errors_total", 'reason="bad_body"') == 2
