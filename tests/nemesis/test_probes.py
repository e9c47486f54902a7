"""The network kinds' connect probe: outcome classification, the harness-side connect from a network
namespace (tried on this process's own namespace, loopback only; needs root, skipped otherwise), and
the fallback to docker exec when the namespace cannot be entered or is not the container's."""
import errno
import os
import socket
from types import SimpleNamespace

import pytest

from harness.nemesis import probes
from tests.nemesis.fakes import FakeStack

ROOT = os.geteuid() == 0
NOT_LOCAL = "192.0.2.1"     # TEST-NET-1: never an address of this machine, so bind() fails without sending


@pytest.fixture()
def listener():
    """A listening socket on 127.0.0.1; yields its port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def full_backlog():
    """A listener whose accept queue is full: the kernel drops further SYNs, so a connect times out."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    return s, port, fillers


@pytest.mark.parametrize("exc, want", [(None, "connected"), (ConnectionRefusedError(), "refused"),
                                       (socket.timeout(), "timeout"), (TimeoutError(), "timeout"),
                                       (OSError(errno.EHOSTUNREACH, "no route"), f"unreachable {errno.EHOSTUNREACH}"),
                                       (OSError(errno.ENETUNREACH, "no net"), f"unreachable {errno.ENETUNREACH}")])
def test_classify(exc, want):
    assert probes.classify(exc) == want


def test_connect_once_connected_refused_and_not_local(listener):
    assert probes.connect_once("127.0.0.1", "127.0.0.1", listener, 0.5) == "connected"
    assert probes.connect_once("127.0.0.1", "127.0.0.1", closed_port(), 0.5) == "refused"
    assert probes.connect_once(NOT_LOCAL, "127.0.0.1", listener, 0.5) is None, "not this namespace's address"


def test_connect_once_times_out_when_syns_are_dropped():
    server, port, fillers = full_backlog()
    try:
        assert probes.connect_once("127.0.0.1", "127.0.0.1", port, 0.05) == "timeout"
    finally:
        for c in fillers:
            c.close()
        server.close()


@pytest.mark.skipif(not ROOT, reason="entering a network namespace needs root (CAP_SYS_ADMIN)")
def test_connect_from_a_namespace(listener):
    me = os.getpid()
    assert probes.connect_from(me, "127.0.0.1", "127.0.0.1", listener, 0.5) == "connected"
    assert probes.connect_from(me, "127.0.0.1", "127.0.0.1", closed_port(), 0.5) == "refused"
    assert probes.connect_from(me, NOT_LOCAL, "127.0.0.1", listener, 0.5) is None


def test_connect_from_gives_up_when_it_cannot_enter(listener, monkeypatch):
    assert probes.connect_from(2 ** 22 + 12345, "127.0.0.1", "127.0.0.1", listener, 0.2) is None, "no such pid"
    monkeypatch.setattr(probes, "enabled", False)
    assert probes.connect_from(os.getpid(), "127.0.0.1", "127.0.0.1", listener, 0.2) is None


class OwnNamespaceStack(FakeStack):
    """A fake whose containers all live in this process's network namespace (so its loopback is theirs)."""

    def container(self, service):
        return SimpleNamespace(attrs={"State": {"Pid": os.getpid()}})


@pytest.mark.skipif(not ROOT, reason="entering a network namespace needs root (CAP_SYS_ADMIN)")
def test_probe_goes_through_the_namespace_without_exec(listener):
    stack = OwnNamespaceStack()
    got = probes.probe(stack, "hive-a", "127.0.0.1", listener, 0.5, src_ip="127.0.0.1")
    assert got == {"from": "hive-a", "ip": "127.0.0.1", "port": listener, "result": "connected", "via": "netns"}
    assert not [c for c in stack.calls if c[0] == "exec"]


def test_probe_falls_back_to_exec():
    stack = FakeStack()
    ip = stack.ips[("worker-a1", "hive-a-net")]
    got = probes.probe(stack, "hive-a", ip, 8001, 0.05, src_ip=stack.ips[("hive-a", "hive-a-net")])
    assert got["via"] == "exec" and got["result"] == "connected"       # FakeStack has no host PIDs
    stack = OwnNamespaceStack()                                         # a PID, but the address is not local there
    got = probes.probe(stack, "hive-a", ip, 8001, 0.05, src_ip=NOT_LOCAL)
    assert got["via"] == "exec" and [c for c in stack.calls if c[0] == "exec"]


def test_probe_all_keeps_the_order():
    stack = FakeStack()
    a1, b1 = stack.ips[("worker-a1", "hive-a-net")], stack.ips[("worker-b1", "hive-b-net")]
    got = probes.probe_all(stack, [("hive-a", a1, 8001, None), ("hive-b", b1, 8001, None)], 0.05)
    assert [(g["from"], g["ip"]) for g in got] == [("hive-a", a1), ("hive-b", b1)]


def test_burst_makes_that_many_connects(listener):
    assert probes.burst("127.0.0.1", "127.0.0.1", listener, 12, 0.05) == 12
    assert probes.burst(NOT_LOCAL, "127.0.0.1", listener, 3, 0.05) is None, "not this namespace's address"


@pytest.mark.skipif(not ROOT, reason="entering a network namespace needs root (CAP_SYS_ADMIN)")
def test_burst_from_a_namespace(listener, monkeypatch):
    assert probes.burst_from(os.getpid(), "127.0.0.1", "127.0.0.1", listener, 5, 0.05) == 5
    assert probes.burst_from(os.getpid(), NOT_LOCAL, "127.0.0.1", listener, 5, 0.05) is None
    monkeypatch.setattr(probes, "enabled", False)
    assert probes.burst_from(os.getpid(), "127.0.0.1", "127.0.0.1", listener, 5, 0.05) is None
