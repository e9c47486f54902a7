"""Every transport honours the Transport interface: methods, stats, context manager, close semantics."""

from __future__ import annotations

import os

import pytest
import zmq

from services import transport as T
from services.transport.base import STAT_KEYS

pytestmark = pytest.mark.timeout(30)

ZMQ_CLASSES = [T.PublisherTransport, T.SubscriberTransport, T.PushTransport, T.PullTransport,
               T.RequestTransport, T.ReplyTransport, T.RouterTransport, T.DealerTransport]


def make_pipe() -> T.PipeTransport:
    """A pipe transport that reads what it writes (one os.pipe)."""
    read_fd, write_fd = os.pipe()
    return T.PipeTransport(read_fd, write_fd, options=T.TransportOptions(linger_ms=0))


@pytest.mark.parametrize("cls", [*ZMQ_CLASSES, T.PipeTransport], ids=lambda c: c.__name__)
def test_transport_has_the_full_interface(cls):
    for name in ("bind", "connect", "send", "send_many", "receive", "close", "get_stats",
                 "__enter__", "__exit__"):
        assert callable(getattr(cls, name)), f"{cls.__name__} lacks {name}"
    assert issubclass(cls, T.Transport)


@pytest.mark.parametrize("cls", ZMQ_CLASSES, ids=lambda c: c.__name__)
def test_zmq_transport_stats_close_and_context_manager(cls, opts):
    with cls(opts) as transport:
        stats = transport.get_stats()
        assert set(STAT_KEYS) <= set(stats)
        assert stats["sent"] == stats["received"] == stats["dropped"] == stats["errors"] == 0
        assert stats["dropped_by_topic"] == {} and stats["closed"] is False
        assert isinstance(transport.socket, zmq.Socket)
        assert transport.socket.getsockopt(zmq.LINGER) == 0
    assert transport.closed and transport.get_stats()["closed"] is True
    transport.close()  # idempotent
    with pytest.raises(T.TransportError):
        transport.send(b"x")
    with pytest.raises(T.TransportError):
        transport.receive(0)


def test_pipe_transport_stats_close_and_context_manager():
    with make_pipe() as pipe:
        assert set(STAT_KEYS) <= set(pipe.get_stats())
        pipe.send(b"one")
        assert pipe.receive(1) == b"one"
        assert pipe.get_stats()["sent"] == pipe.get_stats()["received"] == 1
    assert pipe.closed
    pipe.close()
    with pytest.raises(T.TransportClosed):
        pipe.send(b"x")
    with pytest.raises(T.TransportClosed):
        pipe.receive(0)


@pytest.mark.parametrize("requested", ["tcp://127.0.0.1:*", "tcp://127.0.0.1:0", "tcp://*:0"])
def test_bind_reports_the_os_chosen_port(make, requested):
    pull = make(T.PullTransport)
    actual = pull.bind(requested)
    port = int(actual.rsplit(":", 1)[1])
    assert actual.startswith("tcp://") and 0 < port < 65536
    assert pull.get_stats()["endpoints"] == [actual]


def test_bind_to_an_address_in_use_names_it(make):
    first = make(T.PullTransport)
    actual = first.bind("tcp://127.0.0.1:*")
    with pytest.raises(T.TransportError, match="in use") as info:
        make(T.PullTransport).bind(actual)
    assert actual in str(info.value)


def test_receive_times_out_with_none(make, address):
    pull = make(T.PullTransport)
    pull.bind(address("inproc", "timeout"))
    assert pull.receive(0) is None
    assert pull.receive(0.05) is None
    assert pull.get_stats()["received"] == 0


def test_send_timeout_raises_transport_timeout(make, opts):
    push = make(T.PushTransport, opts.replace(send_timeout_ms=50))
    push.bind("tcp://127.0.0.1:*")  # nobody connected: PUSH cannot queue anywhere
    with pytest.raises(T.TransportTimeout, match="50 ms"):
        push.send(b"x")
    assert push.get_stats()["errors"] == 1 and push.get_stats()["sent"] == 0


def test_options_are_applied_to_the_socket(make):
    options = T.TransportOptions(high_water_mark=77, linger_ms=5, send_timeout_ms=11, receive_timeout_ms=12,
                                 reconnect_ivl_ms=13, reconnect_ivl_max_ms=140, tcp_keepalive=1,
                                 tcp_keepalive_idle=30, tcp_keepalive_intvl=5, tcp_keepalive_cnt=3,
                                 heartbeat_ivl_ms=200, heartbeat_timeout_ms=600, heartbeat_ttl_ms=900,
                                 max_message_size=4096, identity="me")
    sock = make(T.DealerTransport, options).socket
    expected = {zmq.SNDHWM: 77, zmq.RCVHWM: 77, zmq.LINGER: 5, zmq.SNDTIMEO: 11, zmq.RCVTIMEO: 12,
                zmq.RECONNECT_IVL: 13, zmq.RECONNECT_IVL_MAX: 140, zmq.TCP_KEEPALIVE: 1,
                zmq.TCP_KEEPALIVE_IDLE: 30, zmq.TCP_KEEPALIVE_INTVL: 5, zmq.TCP_KEEPALIVE_CNT: 3,
                zmq.MAXMSGSIZE: 4096, zmq.ROUTING_ID: b"me"}
    assert {opt: sock.getsockopt(opt) for opt in expected} == expected
    # libzmq exposes no getter for the ZMTP heartbeat options; they are set without error above.


def test_make_socket_builds_asyncio_sockets_with_the_same_options():
    import zmq.asyncio

    options = T.TransportOptions(high_water_mark=42, linger_ms=0, subscribe_filter=["a", "b"])
    sock = T.make_socket("sub", options, asyncio=True)
    try:
        assert isinstance(sock, zmq.asyncio.Socket)
        assert sock.getsockopt(zmq.SNDHWM) == 42 and sock.getsockopt(zmq.LINGER) == 0
        assert T.async_context().underlying == T.context().underlying  # same libzmq context
    finally:
        sock.close(0)
    xpub = T.make_socket("xpub", options)
    try:
        assert xpub.getsockopt(zmq.SNDHWM) == 42
    finally:
        xpub.close(0)


def test_one_context_per_process_and_a_new_one_after_fork():
    ctx = T.context()
    assert T.context() is ctx
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it got a fresh context, then leave without cleanup
        ok = T.context() is not ctx and T.context() is T.context()
        os.write(write_fd, b"1" if ok else b"0")
        os._exit(0)
    os.close(write_fd)
    try:
        assert os.read(read_fd, 1) == b"1"
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
