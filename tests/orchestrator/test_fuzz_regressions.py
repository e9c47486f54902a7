"""Regressions found by the live frame fuzzer (bench/fuzz.py) at the orchestrator ROUTER, replayed with raw frames."""
from __future__ import annotations

import time

import pytest
import requests
import zmq

from services import protocol as p


@pytest.fixture
def peer(orch):
    """Raw DEALERs speaking to the module's orchestrator; reset after the test."""
    ctx, socks = zmq.Context(), []

    def make(identity: str):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, identity.encode())
        sock.connect(orch.router)
        socks.append(sock)
        return sock
    yield make
    for sock in socks:
        sock.send_multipart(p.encode(p.DISCONNECT, {"reason": "test over"}))
        sock.close(100)
    ctx.term()
    orch.post("/v1/admin/reset", key="key-admin")


def answers(sock, n: int, timeout_s: float = 3.0, extra_s: float = 0.2) -> list[tuple[str, dict]]:
    """The next n answers (HEARTBEATs skipped, ours sent every 0.05 s meanwhile), plus any within extra_s after."""
    got, deadline, beat = [], time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= beat:
            beat = time.monotonic() + 0.05
            sock.send_multipart(p.encode(p.HEARTBEAT, {}))
        if sock.poll(20):
            msg = p.decode(sock.recv_multipart())
            if msg.command != p.HEARTBEAT:
                got.append((msg.name, msg.body))
                if len(got) >= n:
                    deadline = min(deadline, time.monotonic() + extra_s)
    return got


def workers(orch) -> dict[str, dict]:
    body = requests.get(orch.url + "/v1/workers", headers={"Authorization": "Bearer key-admin"}, timeout=5).json()
    return {w["id"]: w for w in body["workers"]}


def ready(hive_id: str, session: str, workers: list | None = None) -> list[bytes]:
    return p.encode(p.READY, {"role": "hive", "id": hive_id, "session": session, "workers": workers or []})


def test_same_session_ready_after_speaking_as_another_hive_registers_the_peer_again(orch, peer):
    """A READY acknowledged on the same-session path left the peer mapped to the hive it had left: every frame
    after the ack was answered DISCONNECT not_registered."""
    sock = peer("fz-peer-1")
    for frames in (ready("fz-h1", "a"), ready("fz-h2", "b"), p.encode(p.DISCONNECT, {"reason": "x"}),
                   ready("fz-h1", "a")):  # back to back: fz-h1 is still live
        sock.send_multipart(frames)
    got = answers(sock, 3)  # answers() heartbeats: before the fix each HEARTBEAT got DISCONNECT not_registered
    assert [name for name, _ in got] == ["READY", "READY", "READY"], got


def test_capacity_with_a_state_outside_the_protocol_is_rejected(orch, peer):
    """CAPACITY state "lost" marked the worker lost without worker_gone (its jobs stranded), and no later
    CAPACITY could make it ready again."""
    sock = peer("fz-peer-2")
    sock.send_multipart(ready("fz-h3", "a", [{"id": "fz-w3", "model": "fz-m", "slots": 2, "state": "ready"}]))
    sock.send_multipart(p.encode(p.CAPACITY, {"worker_id": "fz-w3", "free_slots": 2, "state": "lost"}))
    sock.send_multipart(p.encode(p.CAPACITY, {"worker_id": "fz-w3", "free_slots": 2, "state": "bogus"}))
    got = answers(sock, 3)
    assert [(n, b.get("code")) for n, b in got] == [("READY", None), ("ERROR", "bad_body"), ("ERROR", "bad_body")]
    assert workers(orch)["fz-w3"]["state"] == "ready"


def test_worker_entries_with_huge_slots_or_an_unknown_state_are_rejected(orch, peer):
    """slots 2**64-1 reached the registry's writer thread, which died on OverflowError (a traceback; nothing
    persisted after it); an unknown state was kept as the worker's state."""
    sock = peer("fz-peer-3")
    entries = [{"id": "fz-w4", "model": "fz-m", "slots": 2 ** 64 - 1}, {"id": "fz-w5", "model": "fz-m", "slots": 1,
                                                                        "state": "bogus"},
               {"id": "fz-w6", "model": "fz-m", "slots": 1}]
    sock.send_multipart(ready("fz-h4", "a", entries))
    sock.send_multipart(p.encode(p.WORKER, {"worker_id": "fz-w7", "event": "joined", "model": "fz-m", "slots": 1,
                                            "state": "left"}))
    got = answers(sock, 4, extra_s=0.3)  # the registry writer flushes every 50 ms meanwhile
    assert [(n, b.get("code")) for n, b in got] == [("READY", None)] + [("ERROR", "bad_body")] * 3
    listed = workers(orch)
    assert "fz-w6" in listed and not {"fz-w4", "fz-w5", "fz-w7"} & set(listed)
    assert not [line for line in orch.lines if "Traceback" in line]
