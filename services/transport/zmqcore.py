"""The shared ZeroMQ context, socket construction with TransportOptions, and the ZeroMQ base transport.

One ``zmq.Context`` per process (``context()``): it is ``zmq.Context.instance()``, which pyzmq
recreates in a forked child, so a fork never reuses the parent's context. Sockets made before a
fork belong to the parent and must not be used in the child.

``make_socket(kind, options, asyncio=True)`` builds a ``zmq.asyncio`` socket on a context that
shadows the same libzmq context, configured exactly like the synchronous transports, so the
services' asyncio code and these transports share options and the I/O thread.

At interpreter exit the context is terminated in a helper thread so messages queued on closed
sockets get their ``linger_ms`` to drain; the wait is capped (largest linger in use, at most
:data:`EXIT_WAIT_CAP_S`) so exit never hangs, also when a socket was left open.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import logging
import os
import threading
import time
import types
from typing import Any

try:
    import zmq
except ImportError as exc:  # pragma: no cover - exercised by a test with zmq hidden
    raise ImportError("the ZeroMQ transport needs pyzmq: pip install pyzmq") from exc

from .addresses import check_address, protocol_of
from .base import Transport, TransportClosed, TransportError, TransportOptions, TransportTimeout, to_bytes

log = logging.getLogger(__name__)

EXIT_WAIT_CAP_S = 10.0
SOCKET_KINDS = {
    "pub": zmq.PUB, "xpub": zmq.XPUB, "sub": zmq.SUB, "xsub": zmq.XSUB, "push": zmq.PUSH,
    "pull": zmq.PULL, "req": zmq.REQ, "rep": zmq.REP, "router": zmq.ROUTER,
    "dealer": zmq.DEALER, "pair": zmq.PAIR,
}
_BACKEND_SEND = zmq.backend.Socket.send
MONITOR_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)

_lock = threading.Lock()
_async: dict[tuple[int, int], Any] = {}
_monitor_ids = itertools.count()
_max_linger_ms = [0]
_exit_pid: list[int] = []


def context() -> zmq.Context:
    """Return this process's shared zmq.Context (recreated after fork)."""
    ctx = zmq.Context.instance()
    if not _exit_pid or _exit_pid[0] != os.getpid():
        with _lock:
            if not _exit_pid or _exit_pid[0] != os.getpid():
                _exit_pid[:] = [os.getpid()]
                atexit.register(_terminate_at_exit, os.getpid())
    return ctx


def async_context() -> Any:
    """Return a zmq.asyncio.Context shadowing context() (same I/O thread, same options)."""
    import zmq.asyncio

    base = context()
    key = (os.getpid(), id(base))
    with _lock:
        shadow = _async.get(key)
        if shadow is None or shadow.closed:
            shadow = zmq.asyncio.Context(shadow=base)
            _async.clear()
            _async[key] = shadow
    return shadow


def socket_type(kind: str | int) -> int:
    """Map a kind name (push, pull, pub, xpub, sub, req, rep, router, dealer, pair) to a zmq type."""
    if isinstance(kind, int):
        return kind
    try:
        return SOCKET_KINDS[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown socket kind {kind!r}; allowed: {', '.join(SOCKET_KINDS)}") from None


def make_socket(kind: str | int, options: TransportOptions | None = None, asyncio: bool = False) -> Any:
    """Create a socket on the shared context with every option applied (asyncio=True: zmq.asyncio)."""
    sock = (async_context() if asyncio else context()).socket(socket_type(kind))
    try:
        apply_options(sock, options or TransportOptions())
    except BaseException:
        sock.close(0)
        raise
    return sock


def apply_options(sock: Any, options: TransportOptions) -> None:
    """Apply TransportOptions to a socket (plus SUBSCRIBE on SUB, NODROP on XPUB, MANDATORY on ROUTER)."""
    o = options
    for opt, value in ((zmq.SNDHWM, o.high_water_mark), (zmq.RCVHWM, o.high_water_mark),
                       (zmq.LINGER, o.linger_ms), (zmq.SNDTIMEO, o.send_timeout_ms),
                       (zmq.RCVTIMEO, o.receive_timeout_ms), (zmq.RECONNECT_IVL, o.reconnect_ivl_ms),
                       (zmq.RECONNECT_IVL_MAX, o.reconnect_ivl_max_ms),
                       (zmq.MAXMSGSIZE, o.max_message_size)):
        sock.setsockopt(opt, value)
    for opt, value in ((zmq.TCP_KEEPALIVE, o.tcp_keepalive), (zmq.TCP_KEEPALIVE_IDLE, o.tcp_keepalive_idle),
                       (zmq.TCP_KEEPALIVE_INTVL, o.tcp_keepalive_intvl),
                       (zmq.TCP_KEEPALIVE_CNT, o.tcp_keepalive_cnt)):
        if value != -1:
            sock.setsockopt(opt, value)
    for opt, value in ((zmq.HEARTBEAT_IVL, o.heartbeat_ivl_ms), (zmq.HEARTBEAT_TIMEOUT, o.heartbeat_timeout_ms),
                       (zmq.HEARTBEAT_TTL, o.heartbeat_ttl_ms)):
        if value > 0:
            sock.setsockopt(opt, value)
    kind = sock.getsockopt(zmq.TYPE)
    if o.identity is not None and kind in (zmq.DEALER, zmq.REQ, zmq.ROUTER):
        sock.setsockopt(zmq.ROUTING_ID, to_bytes(o.identity))
    if kind == zmq.SUB:
        for prefix in o.topic_filters():
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
    elif kind == zmq.XPUB:
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    elif kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    _max_linger_ms[0] = max(_max_linger_ms[0], o.linger_ms if o.linger_ms >= 0 else int(EXIT_WAIT_CAP_S * 1000))


def _terminate_at_exit(pid: int) -> None:
    """Terminate the context so closed sockets can drain, waiting at most the largest linger.

    Sockets still open are left alone (another thread may be using them); termination then
    cannot finish and the bounded wait simply expires.
    """
    if pid != os.getpid():
        return
    ctx = zmq.Context.instance()
    worker = threading.Thread(target=ctx.term, name="apiary-zmq-term", daemon=True)
    worker.start()
    worker.join(min(EXIT_WAIT_CAP_S, _max_linger_ms[0] / 1000 + 0.5))


def _raise_closed(*_args: Any, **_kwargs: Any) -> Any:
    """Stand-in for socket methods after close()."""
    raise TransportClosed("transport is closed")


def describe_zmq_error(action: str, address: str, exc: zmq.ZMQError) -> str:
    """Return a message for a failed bind/connect with a hint for the common causes."""
    hint = ""
    if exc.errno == errno.EADDRINUSE:
        hint = " (another socket or process holds it; bind tcp://127.0.0.1:* to let the OS pick a port)"
    elif exc.errno == errno.ENOENT:
        hint = " (the ipc directory does not exist)"
    return f"cannot {action} {address}: {exc.strerror}{hint}"


class ZmqTransport(Transport):
    """Base of the ZeroMQ transports: socket lifecycle, bind/connect, monitor, multipart, close."""

    kind = "zmq"
    socket_kind = "pair"

    def __init__(self, options: TransportOptions | None = None) -> None:
        """Create the socket with options applied."""
        super().__init__(options)
        self.endpoints: list[tuple[str, str]] = []
        self.peers = 0
        self.disconnects = 0
        self._connected_once: set[str] = set()
        self._monitor: Any = None
        self._pid = os.getpid()
        self._open_socket()

    @property
    def socket(self) -> Any:
        """The raw zmq socket (for polling, asyncio integration or extra options)."""
        return self._socket

    def _open_socket(self) -> None:
        """Create and configure the socket, start the monitor, bind the fast paths."""
        self._socket = make_socket(self.socket_kind, self.options)
        if self.options.monitor:
            address = f"inproc://apiary-monitor-{os.getpid()}-{next(_monitor_ids)}"
            self._socket.monitor(address, MONITOR_EVENTS)
            self._monitor = context().socket(zmq.PAIR)
            self._monitor.setsockopt(zmq.RCVHWM, 0)
            self._monitor.setsockopt(zmq.LINGER, 0)
            self._monitor.connect(address)
        # Hot path: pyzmq's Python-level Socket.send only adds DRAFT routing_id/group handling,
        # so bind the Cython send directly (~2.5x cheaper per call); recv is already Cython.
        self._send = types.MethodType(_BACKEND_SEND, self._socket)
        self._recv = self._socket.recv

    def bind(self, address: str) -> str:
        """Bind and return the actual endpoint (an OS-chosen TCP port is filled in)."""
        check_address(address, bind=True)
        try:
            self._socket.bind(address)
        except zmq.ZMQError as exc:
            self.errors += 1
            raise TransportError(describe_zmq_error("bind", address, exc)) from exc
        actual = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.endpoints.append(("bind", actual))
        return actual

    def connect(self, address: str) -> str:
        """Connect (ZeroMQ connects in the background and reconnects by itself)."""
        check_address(address, bind=False)
        try:
            self._socket.connect(address)
        except zmq.ZMQError as exc:
            self.errors += 1
            raise TransportError(describe_zmq_error("connect", address, exc)) from exc
        self.endpoints.append(("connect", address))
        return address

    def send(self, payload: bytes) -> None:
        """Send one single-frame message; TransportTimeout if send_timeout_ms expires."""
        try:
            self._send(payload)
        except zmq.Again:
            self.errors += 1
            raise TransportTimeout(f"{self.kind}: send not queued within {self.options.send_timeout_ms} ms "
                                   "(no peer, or every peer at its high-water mark)") from None
        except zmq.ZMQError as exc:
            self._fail("send", exc)
        self.sent += 1

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the next single-frame message, or None when timeout (seconds) expires."""
        try:
            data = self._recv() if timeout is None else self._recv(zmq.NOBLOCK)
        except zmq.Again:
            if not timeout:
                return None
            data = self._receive_slow(self._recv, timeout)
            if data is None:
                return None
        except zmq.ZMQError as exc:
            self._fail("receive", exc)
        self.received += 1
        return data

    def _receive_slow(self, read: Any, timeout: float) -> Any:
        """Wait up to timeout seconds (negative: forever) and return read(NOBLOCK), or None."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            left = -1.0 if deadline is None else deadline - time.monotonic()
            if deadline is not None and left <= 0:
                return None
            if not self._wait_readable(left):
                return None
            try:
                return read(zmq.NOBLOCK)
            except zmq.Again:
                continue

    def send_large(self, payload: Any) -> None:
        """Send one large frame (>= 64 KiB) without copying it; do not modify the buffer afterwards."""
        try:
            self._send(payload, 0, False)
        except zmq.Again:
            self.errors += 1
            raise TransportTimeout(f"{self.kind}: send not queued within {self.options.send_timeout_ms} ms") from None
        except zmq.ZMQError as exc:
            self._fail("send", exc)
        self.sent += 1

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        """Send one multipart message."""
        try:
            self._socket.send_multipart(frames, flags)
        except zmq.Again:
            self.errors += 1
            raise TransportTimeout(f"{self.kind}: multipart send not queued in time") from None
        except zmq.ZMQError as exc:
            self._fail("send", exc)
        self.sent += 1

    def receive_multipart(self, timeout: float | None = None) -> list[bytes] | None:
        """Return the next multipart message as a list of frames, or None on timeout."""
        read = self._socket.recv_multipart if not self._closed else _raise_closed
        try:
            frames = read() if timeout is None else read(zmq.NOBLOCK)
        except zmq.Again:
            if not timeout:
                return None
            frames = self._receive_slow(read, timeout)
            if frames is None:
                return None
        except zmq.ZMQError as exc:
            self._fail("receive", exc)
        self.received += 1
        return frames

    def _wait_readable(self, timeout: float) -> bool:
        """Wait up to timeout seconds (negative: forever) for an inbound message."""
        if self._closed:
            raise TransportClosed("transport is closed")
        ms = -1 if timeout < 0 else int(timeout * 1000)
        return bool(self._socket.poll(ms, zmq.POLLIN))

    def _fail(self, action: str, exc: zmq.ZMQError) -> None:
        """Count an error and raise it as TransportError (TransportClosed after close)."""
        self.errors += 1
        if exc.errno in (zmq.ENOTSOCK, zmq.ETERM):
            raise TransportClosed(f"{self.kind}: {action} on a closed socket") from exc
        raise TransportError(f"{self.kind}: {action} failed: {exc.strerror}") from exc

    def _drain_monitor(self) -> None:
        """Consume pending connection events and update peers/disconnects/reconnects."""
        mon = self._monitor
        if mon is None:
            return
        while True:
            try:
                frames = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                return
            event = int.from_bytes(frames[0][:2], "little")
            endpoint = frames[1].decode(errors="replace") if len(frames) > 1 else ""
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.peers += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self.disconnects += 1
                self.peers = max(0, self.peers - 1)
            elif event == zmq.EVENT_CONNECTED:
                if endpoint in self._connected_once:
                    self.reconnects += 1
                self._connected_once.add(endpoint)

    def wait_for_peers(self, count: int, timeout: float) -> int:
        """Block until count peers completed the ZMTP handshake (tcp/ipc only); TransportTimeout otherwise."""
        if self._monitor is None:
            raise TransportError("wait_for_peers needs the monitor option enabled (monitor: true)")
        if any(protocol_of(addr) == "inproc" for _, addr in self.endpoints):
            raise TransportError("wait_for_peers works on tcp:// and ipc:// only: inproc connections "
                                 "emit no handshake events; connect inproc peers before sending instead")
        deadline = time.monotonic() + timeout
        while True:
            self._drain_monitor()
            if self.peers >= count:
                self._socket.getsockopt(zmq.EVENTS)  # let the socket attach the new pipes now
                return self.peers
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.kind}: only {self.peers} of {count} peers connected to "
                                       f"{[a for _, a in self.endpoints]} within {timeout} s")
            self._monitor.poll(int(left * 1000) + 1, zmq.POLLIN)

    def reopen(self) -> None:
        """Close the socket without lingering and open a fresh one on the same endpoints."""
        endpoints = list(self.endpoints)
        self._close_socket(0)
        self.reopens += 1
        self._open_socket()
        self.endpoints = []
        for action, address in endpoints:
            (self.bind if action == "bind" else self.connect)(address)

    def _close_socket(self, linger_ms: int | None) -> None:
        """Close monitor and socket; linger_ms None = the linger_ms option."""
        if self._monitor is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._monitor = None
        self._socket.close(self.options.linger_ms if linger_ms is None else linger_ms)
        self._send = self._recv = _raise_closed

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket; queued messages drain for linger_ms (default: the linger_ms option)."""
        if self._closed:
            return
        self._drain_monitor()
        self._close_socket(linger_ms)
        self._closed = True

    def __del__(self) -> None:
        """Close a transport dropped without close(), monitor first (a closed monitor reader could block libzmq)."""
        try:
            if not self._closed and self._pid == os.getpid():
                self.close()
        except Exception:  # interpreter teardown: nothing sensible left to do
            pass

    def _extra_stats(self) -> dict[str, Any]:
        """Add connection counters and endpoints."""
        if not self._closed:
            self._drain_monitor()
        return {"peers": self.peers, "disconnects": self.disconnects,
                "endpoints": [addr for _, addr in self.endpoints]}
