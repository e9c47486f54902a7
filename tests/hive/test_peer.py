"""UpstreamPeer in-process against a ROUTER on the same loop: handshake, dispatch, bad frames, loss, reconnect."""
from __future__ import annotations

import asyncio
import logging

import zmq

from services import protocol as p
from services.common.peer import UpstreamPeer
from services.transport.loop import LoopSocket

INTERVAL_S = 0.05  # expiry 0.2 s with liveness 4
log = logging.getLogger("test-peer")


class FakeUpstream:
    """A ROUTER bound on an OS port whose received messages queue up for the test."""

    def __init__(self, ctx: zmq.Context):
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting peer keeps its identity
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        self.addr = f"tcp://127.0.0.1:{port}"
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sock = LoopSocket(sock, self.inbox.put_nowait, name="fake-upstream")

    async def recv(self, command: bytes, timeout_s: float = 3.0) -> tuple[bytes, dict]:
        """Return (identity, body) of the next `command` from the peer, skipping others, or fail naming it."""
        async def next_match():
            while True:
                frames = await self.inbox.get()
                msg = p.decode(frames[1:])
                if msg.command == command:
                    return frames[0], msg.body
        try:
            return await asyncio.wait_for(next_match(), timeout_s)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {p.COMMAND_NAMES[command]} from the peer within {timeout_s} s") from None

    def send(self, ident: bytes, frames: list) -> None:
        assert self.sock.send([ident, *frames]), "fake upstream could not send"


class Recorder:
    """The role side of a peer: records every hook call."""

    def __init__(self):
        self.requests: list[tuple[dict, list]] = []
        self.registered = 0
        self.lost: list[str] = []
        self.bad: list[str] = []
        self.drops = 0

    def peer(self, ctx: zmq.Context, addr: str, **kw) -> UpstreamPeer:
        return UpstreamPeer(ctx, identity="me", address=addr, role="tester", upstream="fake", event="fake",
                            interval_s=INTERVAL_S, liveness=4, curve=None, log=log,
                            handlers={p.REQUEST: lambda body, frames: self.requests.append((body, frames))},
                            ready_fields=lambda: {"extra": 1}, heartbeat_fields=lambda: {"beat": True},
                            on_registered=self.on_registered, on_lost=self.lost.append,
                            on_bad_frame=lambda exc: self.bad.append(exc.code), on_drop=self.on_drop, **kw)

    def on_registered(self) -> None:
        self.registered += 1

    def on_drop(self) -> None:
        self.drops += 1


def run(scenario) -> None:
    """Run `scenario(ctx, upstream, role)` on a fresh loop, then close everything."""
    async def main():
        ctx = zmq.Context()
        upstream, role = FakeUpstream(ctx), Recorder()
        try:
            await scenario(ctx, upstream, role)
        finally:
            upstream.sock.close()
            ctx.destroy(linger=0)
    asyncio.run(main())


def start(peer: UpstreamPeer) -> asyncio.Task:
    peer.connect()
    return asyncio.ensure_future(peer.tick_loop())


def test_handshake_heartbeat_and_table_dispatch():
    async def scenario(ctx, upstream, role):
        peer = role.peer(ctx, upstream.addr)
        task = start(peer)
        try:
            ident, ready = await upstream.recv(p.READY)
            assert ident == b"me" and list(ready) == ["role", "id", "session", "extra"]
            assert ready["role"] == "tester" and ready["session"] == peer.session and not peer.registered
            upstream.send(ident, p.encode(p.READY, {"role": "up", "id": "u"}))
            upstream.send(ident, p.encode(p.READY, {"role": "up", "id": "u"}))  # a repeat ack changes nothing
            _, beat = await upstream.recv(p.HEARTBEAT)
            assert beat == {"beat": True} and peer.registered and role.registered == 1
            request = p.encode(p.REQUEST, {"job_id": "j", "trace_id": "t", "worker_id": "me", "model": "m",
                                           "prompt": "hi", "max_tokens": 1, "seed": 1, "attempt": 1})
            upstream.send(ident, request)
            upstream.send(ident, p.encode(p.PARTIAL, {"job_id": "j", "attempt": 1, "seq": 0, "text": "x"}))
            _, error = await upstream.recv(p.ERROR)
            assert error == {"code": p.UNKNOWN_COMMAND, "message": "PARTIAL not expected by a tester"}
            assert [body["job_id"] for body, _ in role.requests] == ["j"] and role.requests[0][1] == request
            upstream.send(ident, [b"junk"])
            _, error = await upstream.recv(p.ERROR)
            assert error["code"] == p.BAD_FRAME and role.bad == [p.BAD_FRAME] and not role.lost
        finally:
            task.cancel()
            peer.close(linger=0)
    run(scenario)


def test_silent_upstream_is_lost_and_peer_reregisters_on_a_new_session():
    async def scenario(ctx, upstream, role):
        peer = role.peer(ctx, upstream.addr)
        task = start(peer)
        try:
            ident, first = await upstream.recv(p.READY)
            upstream.send(ident, p.encode(p.READY, {"role": "up", "id": "u"}))
            await upstream.recv(p.HEARTBEAT)
            _, again = await upstream.recv(p.READY)  # silent for an expiry: lost, reconnected, READY resent
            assert role.lost == ["silent"] and not peer.registered
            assert again["session"] != first["session"] and again["session"] == peer.session
        finally:
            task.cancel()
            peer.close(linger=0)
    run(scenario)


def test_unanswered_ready_is_resent_then_reconnected(caplog):
    async def scenario(ctx, upstream, role):
        peer = role.peer(ctx, upstream.addr)
        task = start(peer)
        try:
            _, first = await upstream.recv(p.READY)
            sessions = {first["session"]}
            while len(sessions) < 2:  # resends keep the session until an expiry without an ack
                _, ready = await upstream.recv(p.READY)
                sessions.add(ready["session"])
            assert any(getattr(r, "event", None) == "fake_reconnect" for r in caplog.records)
            assert not role.lost and role.registered == 0
        finally:
            task.cancel()
            peer.close(linger=0)
    with caplog.at_level(logging.INFO, logger="test-peer"):
        run(scenario)


def test_muted_peer_neither_reads_nor_sends():
    async def scenario(ctx, upstream, role):
        muted = [False]
        peer = role.peer(ctx, upstream.addr, muted=lambda: muted[0])
        task = start(peer)
        try:
            await upstream.recv(p.READY)
            muted[0] = True
            seen = peer.liveness.last_seen
            peer.on_frames(p.encode(p.READY, {"role": "up", "id": "u"}))
            peer.on_frames([b"junk"])
            assert not peer.send(p.HEARTBEAT, {})
            assert not peer.registered and role.bad == [] and role.drops == 0 and peer.liveness.last_seen == seen
            muted[0] = False
            await upstream.recv(p.READY)  # unmuted: registration resumes
            peer.on_frames(p.encode(p.READY, {"role": "up", "id": "u"}))
            assert peer.registered and role.registered == 1
        finally:
            task.cancel()
            peer.close(linger=0)
    run(scenario)
