"""Subprocess peers of the transport benchmark: senders, receivers, echo servers and clients, raw and Apiary.

Every process target is a module-level function (importable by a spawned child too).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from typing import Any

MP = mp.get_context("fork")
STEP_TIMEOUT_S = 120.0


# ---------------------------------------------------------------- throughput children

def pull(kind: str, addr: str, n: int, q: Any, done: Any) -> None:
    """Bind a PULL (raw or Apiary), report its address, time n messages."""
    if kind == "raw":
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PULL)
        sock.bind(addr)
        q.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        recv = sock.recv
    else:
        from services.transport import PullTransport, TransportOptions
        t = PullTransport(TransportOptions(linger_ms=0))
        q.put(t.bind(addr))
        recv = t.receive
    q.put(receive_rate(recv, n))
    done.set()


def receive_rate(recv: Any, n: int) -> float:
    """Receive n messages; messages per second over the last n-1 (the first one starts the clock)."""
    recv()
    start = time.perf_counter()
    for _ in range(n - 1):
        recv()
    return (n - 1) / (time.perf_counter() - start)


def push(kind: str, addr: str, n: int, size: int, done: Any) -> None:
    """Connect a PUSH and send n messages of size bytes."""
    payload = b"x" * size
    if kind == "raw":
        import zmq
        sock = zmq.Context().socket(zmq.PUSH)
        sock.connect(addr)
        send = sock.send
    else:
        from services.transport import PushTransport, TransportOptions
        t = PushTransport(TransportOptions(linger_ms=0))
        t.connect(addr)
        send = t.send
    for _ in range(n):
        send(payload)
    _close_when_received(sock if kind == "raw" else t, done)


def _close_when_received(sock: Any, done: Any) -> None:
    """Keep the sender open until the receiver has everything (linger alone can lose the tail on ipc)."""
    done.wait(STEP_TIMEOUT_S)
    sock.close(0)


def pub(kind: str, addr: str, n: int, size: int, q: Any, done: Any) -> None:
    """Bind a publisher, wait for one subscription, publish n messages under one topic."""
    payload = b"x" * size
    if kind == "raw":
        import zmq
        sock = zmq.Context().socket(zmq.XPUB)  # plain PUB sending; XPUB only to see the subscription arrive
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind(addr)
        q.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        sock.recv()
        for _ in range(n):
            sock.send_multipart([b"bench", payload])
        _close_when_received(sock, done)
    else:
        from services.transport import PublisherTransport, TransportOptions
        t = PublisherTransport(TransportOptions(linger_ms=0, high_water_mark=0))
        q.put(t.bind(addr))
        t.wait_for_subscribers(1, timeout=30)
        send = t.send
        for _ in range(n):
            send(payload, b"bench")
        _close_when_received(t, done)


def sub(kind: str, addr: str, n: int, q: Any, done: Any) -> None:
    """Connect a subscriber and time n messages."""
    if kind == "raw":
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(addr)
        recv = sock.recv_multipart
    else:
        from services.transport import SubscriberTransport, TransportOptions
        t = SubscriberTransport(TransportOptions(linger_ms=0, high_water_mark=0))
        t.connect(addr)
        recv = t.receive
    q.put(receive_rate(recv, n))
    done.set()


def pipe_writer(kind: str, fds: tuple[int, int], n: int, size: int) -> None:
    """Write n length-framed messages to the pipe."""
    os.close(fds[0])
    payload = b"x" * size
    if kind == "raw":
        write, fd = os.write, fds[1]
        for _ in range(n):
            write(fd, len(payload).to_bytes(4, "big") + payload)
    else:
        from services.transport import PipeTransport
        send = PipeTransport(None, fds[1]).send
        for _ in range(n):
            send(payload)


def pipe_reader(kind: str, fds: tuple[int, int], n: int, q: Any) -> None:
    """Read and time n length-framed messages from the pipe."""
    os.close(fds[1])
    if kind == "raw":
        reader = os.fdopen(fds[0], "rb", buffering=1 << 16)

        def recv() -> bytes:
            return reader.read(int.from_bytes(reader.read(4), "big"))
    else:
        from services.transport import PipeTransport
        recv = PipeTransport(fds[0], None).receive
    recv()
    start = time.perf_counter()
    for _ in range(n - 1):
        recv()
    q.put((n - 1) / (time.perf_counter() - start))


def get(q: Any, what: str) -> Any:
    """Read one value from a child, or fail saying what did not arrive."""
    try:
        return q.get(timeout=STEP_TIMEOUT_S)
    except Exception:
        raise TimeoutError(f"{what} did not arrive within {STEP_TIMEOUT_S} s") from None


# ---------------------------------------------------------------- round-trip children

def echo_server(kind: str, pattern: str, addr: str, count: int, q: Any) -> None:
    """Echo count requests (REP or ROUTER, raw or Apiary)."""
    if kind == "raw":
        import zmq
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REP if pattern == "req_rep" else zmq.ROUTER)
        sock.bind(addr)
        q.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        if pattern == "req_rep":
            for _ in range(count):
                sock.send(sock.recv())
        else:
            for _ in range(count):
                sock.send_multipart(sock.recv_multipart())
        sock.close(0)
        return
    from services.transport import ReplyTransport, RouterTransport, TransportOptions
    server = (ReplyTransport if pattern == "req_rep" else RouterTransport)(TransportOptions(linger_ms=0))
    q.put(server.bind(addr))
    if pattern == "req_rep":
        for _ in range(count):
            server.send(server.receive())
    else:
        for _ in range(count):
            identity, frames = server.receive_from()
            server.send_to(identity, *frames)
    server.close(0)


def client(kind: str, pattern: str, addr: str, count: int, warmup: int, q: Any) -> None:
    """Time count round trips after warmup ones; report (p50, p99) in microseconds."""
    payload = b"x" * 100
    if kind == "raw":
        import zmq
        sock = zmq.Context.instance().socket(zmq.REQ if pattern == "req_rep" else zmq.DEALER)
        sock.connect(addr)
        send, recv = sock.send, sock.recv
    else:
        from services.transport import DealerTransport, RequestTransport, TransportOptions
        transport = (RequestTransport if pattern == "req_rep" else DealerTransport)(TransportOptions(linger_ms=0))
        transport.connect(addr)
        send, recv = transport.send, transport.receive
    samples = []
    clock = time.perf_counter
    for i in range(warmup + count):
        start = clock()
        send(payload)
        recv()
        if i >= warmup:
            samples.append(clock() - start)
    samples.sort()
    q.put((samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6))


def inproc_pair(kind: str, pattern: str, count: int, warmup: int, q: Any) -> None:
    """Server thread and client in one process over inproc://."""
    inner: Any = MP.Queue()
    addr = f"inproc://bench-{pattern}-{kind}"
    server = threading.Thread(target=echo_server, args=(kind, pattern, addr, count + warmup, inner), daemon=True)
    server.start()
    client(kind, pattern, get(inner, "inproc server address"), count, warmup, q)
    server.join(10)
