"""REQ/REP with timeout and lazy-pirate recovery; ROUTER/DEALER multipart and identity routing."""

from __future__ import annotations

import threading

import pytest

from services.transport import (DealerTransport, ReplyTransport, RequestTransport, RouterTransport,
                                TransportError, TransportOptions, TransportTimeout)

pytestmark = pytest.mark.timeout(60)


def test_req_timeout_reopens_the_socket_and_the_next_request_works(make, address, threads, caplog):
    rep, req = make(ReplyTransport), make(RequestTransport)
    req.connect(rep.bind(address("ipc", "reqrep")))
    release = threading.Event()

    def serve() -> None:
        first = rep.receive(10)
        assert release.wait(10), "the test never released the slow reply"
        rep.send(b"late reply to " + first)  # goes to the abandoned socket and is discarded
        second = rep.receive(10)
        rep.send(b"reply to " + second)

    threads(serve)
    req.send(b"1")
    assert req.receive(0.2) is None  # timed out: socket closed and reopened
    assert req.get_stats()["reopens"] == 1
    assert "lazy pirate" in caplog.text
    release.set()
    req.send(b"2")  # a broken REQ would raise "cannot send in current state" here
    assert req.receive(10) == b"reply to 2"
    stats = req.get_stats()
    assert stats["sent"] == 2 and stats["received"] == 1 and stats["reopens"] == 1


def test_request_retries_until_a_reply_arrives(make, address, threads):
    server, req = make(RouterTransport), make(RequestTransport)
    req.connect(server.bind(address("tcp", "retry")))

    def serve() -> None:
        assert server.receive(10) == b"job"  # dropped: simulates a lost request
        assert server.receive(10) == b"job"  # the resend
        server.send(b"done")

    threads(serve)
    assert req.request(b"job", timeout=0.3, retries=3) == b"done"
    stats = req.get_stats()
    assert stats["retries"] == 1 and stats["reopens"] == 1


def test_request_gives_up_after_the_retries(make, address):
    req = make(RequestTransport, TransportOptions(linger_ms=0, request_timeout_ms=50, request_retries=2))
    req.connect(address("ipc", "nobody-listens"))
    with pytest.raises(TransportTimeout, match="after 3 attempts"):
        req.request(b"ping")
    stats = req.get_stats()
    assert stats["retries"] == 2 and stats["reopens"] == 3 and stats["sent"] == 3


def test_req_and_rep_enforce_the_alternation(make, address):
    rep, req = make(ReplyTransport), make(RequestTransport)
    req.connect(rep.bind(address("inproc", "fsm")))
    with pytest.raises(TransportError, match="receive\\(\\) a request"):
        rep.send(b"unsolicited")
    with pytest.raises(TransportError, match="send\\(\\) a request"):
        req.receive(0)
    req.send(b"a")
    with pytest.raises(TransportError, match="receive\\(\\) the reply"):
        req.send(b"b")
    assert rep.receive(5) == b"a"
    rep.send(b"A")
    assert req.receive(5) == b"A"


def test_router_routes_replies_to_dealers_by_identity(make, address):
    router = make(RouterTransport)
    endpoint = router.bind(address("tcp", "router"))
    dealers = {name: make(DealerTransport, TransportOptions(linger_ms=0, identity=name)) for name in ("d1", "d2")}
    for dealer in dealers.values():
        dealer.connect(endpoint)
    for name, dealer in dealers.items():
        dealer.send_multipart([b"HDR", name.encode(), b"body"])
    seen = {}
    for _ in dealers:
        identity, frames = router.receive_from(5)
        seen[identity] = frames
    assert seen == {b"d1": [b"HDR", b"d1", b"body"], b"d2": [b"HDR", b"d2", b"body"]}
    router.send_to(b"d2", b"for", b"d2")
    router.send_to("d1", b"for", b"d1")
    assert dealers["d1"].receive_multipart(5) == [b"for", b"d1"]
    assert dealers["d2"].receive(5) == b"d2"  # receive() returns the last frame


def test_router_refuses_unknown_identities(make, address):
    router = make(RouterTransport)
    router.bind(address("inproc", "mandatory"))
    with pytest.raises(TransportError, match="no connected peer with identity 'ghost'"):
        router.send_to("ghost", b"x")
    with pytest.raises(TransportError, match="nothing was received"):
        router.send(b"x")
    assert router.get_stats()["errors"] == 1


def test_router_replies_to_a_req_peer_keeping_the_envelope(make, address):
    router, req = make(RouterTransport), make(RequestTransport)
    req.connect(router.bind(address("ipc", "envelope")))
    req.send(b"question")
    assert router.receive(5) == b"question"
    assert router.last_identity
    router.send(b"answer")
    assert req.receive(5) == b"answer"
