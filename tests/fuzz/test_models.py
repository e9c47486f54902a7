"""Crafted-input tests of the endpoint models in bench/fuzz.py: what the orchestrator and a hive count and answer."""
from __future__ import annotations

from bench.fuzz_models import HiveModel, OrchestratorModel
from services import protocol as p
from services.protocol_malformed import frames as malformed

A, B = b"fuzz-hive-0", b"fuzz-hive-1"
BAD_BODY = (["bad_body"], ["error:bad_body"])
NOTHING = ([], [])


def ready(hive_id: str, session: str | None = "s", workers: list | None = None, role: str = "hive") -> list[bytes]:
    return p.encode(p.READY, {"role": role, "id": hive_id, "session": session, "workers": workers or []})


def worker(wid: str = "w1", **extra) -> dict:
    return {"id": wid, "model": "m", "slots": 2, "state": "ready", **extra}


def test_orchestrator_decode_errors_pass_through_whatever_the_state():
    model = OrchestratorModel()
    assert model.expect(A, malformed("wrong_frame_count")) == (["bad_frame"], ["error:bad_frame"])
    assert model.expect(A, malformed("bad_version")) == (["unsupported_version"], ["error:unsupported_version"])


def test_orchestrator_unregistered_peer_gets_disconnect_except_for_ready_and_disconnect():
    model = OrchestratorModel()
    assert model.expect(A, p.encode(p.HEARTBEAT)) == (["not_registered"], ["disconnect"])
    assert model.expect(A, p.encode(p.DISCONNECT, {"reason": "x"})) == NOTHING
    assert model.expect(A, ready("h0", role="worker")) == BAD_BODY
    assert not model.registered(A)
    assert model.expect(A, ready("h0")) == ([], ["ready"])
    assert model.registered(A)


def test_orchestrator_registered_peer_wrong_direction_and_bad_states():
    model = OrchestratorModel()
    model.expect(A, ready("h0", workers=[worker("w1")]))
    assert model.expect(A, p.encode(p.CANCEL, {"job_id": "j", "attempt": 1})) == \
        (["unexpected_command"], ["error:unknown_command"])
    assert model.expect(A, p.encode(p.CAPACITY, {"worker_id": "nobody", "free_slots": 1, "state": "lost"})) == BAD_BODY
    assert model.expect(A, p.encode(p.CAPACITY, {"worker_id": "w1", "free_slots": 1, "state": "busy"})) == NOTHING
    assert model.expect(A, p.encode(p.FINAL, {"job_id": "unknown", "attempt": 1, "tokens": 1})) == NOTHING


def test_orchestrator_counts_each_bad_worker_entry():
    model = OrchestratorModel()
    entries = [worker("w1"), worker("w2", slots=0), worker("w3", slots=2 ** 64 - 1), worker("w4", state="lost"), 7]
    assert model.expect(A, ready("h0", workers=entries)) == (["bad_body"] * 4, ["ready"] + ["error:bad_body"] * 4)


def test_orchestrator_worker_events():
    model = OrchestratorModel()
    model.expect(A, ready("h0", workers=[worker("w1", session="ws")]))
    event = lambda **b: p.encode(p.WORKER, {"worker_id": "w1", **b})  # noqa: E731
    assert model.expect(A, event(event="exploded")) == BAD_BODY
    assert model.expect(A, p.encode(p.WORKER, {"worker_id": "stranger", "event": "exploded"})) == NOTHING
    # joined again in the same session: already registered, not validated again (as the orchestrator does)
    assert model.expect(A, event(event="joined", session="ws", slots=0, model="m")) == NOTHING
    assert model.expect(A, event(event="joined", session="other", slots=0, model="m")) == BAD_BODY
    assert model.expect(A, event(event="left")) == NOTHING
    assert model.expect(A, event(event="joined", session="ws", slots=0, model="m")) == BAD_BODY  # left: not a repeat


def test_orchestrator_hijack_by_another_peer_and_disconnect_unregister():
    model = OrchestratorModel()
    model.expect(A, ready("h0"))
    model.expect(B, ready("h0", session="other"))  # B now speaks for h0: A is nobody
    assert not model.registered(A) and model.registered(B)
    model.expect(B, p.encode(p.DISCONNECT, {"reason": "x"}))
    assert not model.registered(B)


def test_orchestrator_same_session_ready_after_another_hive_id_keeps_the_peer_registered():
    model = OrchestratorModel()
    model.expect(A, ready("h0", session="a"))
    model.expect(A, ready("h1", session="b"))
    model.expect(A, p.encode(p.DISCONNECT, {"reason": "x"}))  # h1 left
    assert model.expect(A, ready("h0", session="a")) == ([], ["ready"])
    assert model.registered(A)


def test_hive_model_registration_rules():
    model, me = HiveModel(), b"fuzz-hw-0"
    body = {"role": "worker", "id": "fuzz-hw-0", "model": "m", "slots": 2, "state": "ready"}
    assert model.expect(me, p.encode(p.PARTIAL, {"job_id": "j", "attempt": 1, "seq": 0, "text": "x"})) == \
        (["not_registered"], ["disconnect"])
    assert model.expect(me, p.encode(p.READY, dict(body, id="fuzz-hw-1"))) == BAD_BODY
    assert model.expect(me, p.encode(p.READY, dict(body, slots=0))) == BAD_BODY
    assert model.expect(me, p.encode(p.READY, dict(body, state="bogus"))) == BAD_BODY
    assert model.expect(me, p.encode(p.READY, dict(body, model=5))) == BAD_BODY
    assert not model.registered(me)
    assert model.expect(me, p.encode(p.READY, body)) == ([], ["ready"])
    assert model.registered(me)


def test_hive_model_registered_worker_frames():
    model, me = HiveModel(), b"fuzz-hw-0"
    model.expect(me, p.encode(p.READY, {"role": "worker", "id": "fuzz-hw-0", "model": "m"}))
    assert model.expect(me, p.encode(p.FINAL, {"job_id": "j", "attempt": 1, "tokens": 1})) == NOTHING
    assert model.expect(me, p.encode(p.HEARTBEAT, {"free_slots": 1})) == NOTHING
    assert model.expect(me, p.encode(p.HEARTBEAT, {"state": "lost"})) == BAD_BODY
    assert model.expect(me, p.encode(p.CAPACITY, {"worker_id": "x", "free_slots": 1, "state": ""})) == BAD_BODY
    assert model.expect(me, p.encode(p.PROGRESS, {"model": "m", "state": "ready"})) == \
        (["unexpected_command"], ["error:unknown_command"])
    assert model.expect(me, p.encode(p.DISCONNECT, {"reason": "bye"})) == NOTHING
    assert not model.registered(me)
    assert model.expect(me, p.encode(p.DISCONNECT, {"reason": "bye"})) == NOTHING
