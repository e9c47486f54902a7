"""Every pattern over tcp://, ipc:// and inproc://, built through TransportFactory.from_config."""

from __future__ import annotations

import pytest

from services.transport import TransportFactory

pytestmark = pytest.mark.timeout(30)
PATTERNS = {"push_pull": ("push", "pull"), "pub_sub": ("publisher", "subscriber"),
            "req_rep": ("rep", "req"), "router_dealer": ("router", "dealer")}
COUNT = 100


@pytest.mark.parametrize("protocol", ["tcp", "ipc", "inproc"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_pattern_round_trip_over_protocol(pattern, protocol, address):
    bind_role, connect_role = PATTERNS[pattern]
    base = {"transport": "zeromq", "pattern": pattern, "protocol": protocol, "zeromq": {"linger_ms": 0}}
    with TransportFactory.from_config({**base, "role": bind_role,
                                       "address": address(protocol, f"{pattern}")}) as server:
        endpoint = server.get_stats()["endpoints"][0]
        with TransportFactory.from_config({**base, "role": connect_role, "address": endpoint}) as client:
            exchange(pattern, server, client)


def exchange(pattern: str, server, client) -> None:
    """Move COUNT messages across the pair and check each arrived once, in order."""
    if pattern == "push_pull":
        server.send_many(b"%d" % i for i in range(COUNT))
        assert [client.receive(5) for _ in range(COUNT)] == [b"%d" % i for i in range(COUNT)]
    elif pattern == "pub_sub":
        server.wait_for_subscribers(1, timeout=5)
        for i in range(COUNT):
            assert server.send(b"%d" % i, "topic")
        assert [client.receive_with_topic(5) for _ in range(COUNT)] == [(b"topic", b"%d" % i) for i in range(COUNT)]
    elif pattern == "req_rep":
        for i in range(COUNT):
            client.send(b"%d" % i)
            server.send(server.receive(5) + b"!")
            assert client.receive(5) == b"%d!" % i
    else:
        for i in range(COUNT):
            client.send_multipart([b"h", b"%d" % i])
            identity, frames = server.receive_from(5)
            server.send_to(identity, *frames, b"ok")
            assert client.receive_multipart(5) == [b"h", b"%d" % i, b"ok"]
    assert client.get_stats()["errors"] == server.get_stats()["errors"] == 0

