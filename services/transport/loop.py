"""ZeroMQ sockets driven by the asyncio loop (no zmq.asyncio): the transport the services run AMDP/1 over.

pyzmq's `zmq.asyncio` allocates a Future per send and receive and re-polls the socket after each
one; with a few small frames per job that layer costs more than everything else a relay does.
`LoopSocket` wraps a plain (blocking-API) `zmq.Socket` instead:

* the socket's `zmq.FD` is registered with the loop's `add_reader`; on wake-up the socket is
  drained with non-blocking receives until `zmq.Again`, handing each multipart message to a
  callback, at most `burst` messages per loop iteration (a backlog cannot starve timers and HTTP:
  the rest is drained on the next iteration);
* sends are non-blocking and return False when the frames cannot be queued (`errno` tells why:
  `zmq.EAGAIN` for a full queue or no connection, `zmq.EHOSTUNREACH` for a gone ROUTER peer);
* the drain stops when `zmq.EVENTS` shows no more input (reading it also re-arms the FD);
* ZeroMQ's FD is edge-triggered: any send (or `zmq.EVENTS` read) may consume the notification of
  frames that arrived meanwhile, so after a send made outside a drain `zmq.EVENTS` is checked and a
  drain scheduled when input is pending; `kick()` (called by the services' tick loops) schedules a
  drain unconditionally as a safety net;
* `send_when_connected` keeps frames until the socket can take them (a DEALER with IMMEDIATE before
  its connection completes) and returns a Future done once they were handed over, cancelled when
  the socket is closed first.

Flags are plain ints: no enum arithmetic on the hot path.
"""
from __future__ import annotations

import asyncio
import logging
import math
import types
from typing import Callable

import zmq

from services.common.heartbeat import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS
from services.curve import CurveKeys, secure_client, secure_server

log = logging.getLogger("transport.loop")

NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
EAGAIN = zmq.EAGAIN
EHOSTUNREACH = zmq.EHOSTUNREACH
BURST = 64  # messages handled back to back before the loop gets a turn

_BaseSocket = zmq.backend.Socket  # the Cython socket: its send skips the sugar layer's Python frame


def _raw_send(sock) -> Callable:
    """Return the socket's send without pyzmq's Python wrapper (falls back to sock.send for test doubles)."""
    if isinstance(sock, _BaseSocket):
        return types.MethodType(_BaseSocket.send, sock)
    return sock.send


class LoopSocket:
    """A plain ZeroMQ socket integrated with the running asyncio loop (see the module docstring)."""

    def __init__(self, sock, on_message: Callable[[list], None], *, burst: int = BURST,
                 loop: asyncio.AbstractEventLoop | None = None, name: str = ""):
        self.sock = sock
        self.on_message = on_message
        self.burst = burst
        self.name = name
        self.loop = loop or asyncio.get_running_loop()
        self.closed = False
        self.errno = 0  # why the last failed send failed
        self._send = _raw_send(sock)
        self._recv = sock.recv
        self._get = sock.get
        self._scheduled = False
        self._draining = False
        self._pending: list[tuple[list, asyncio.Future]] = []
        self.fd = sock.getsockopt(zmq.FD)
        self.loop.add_reader(self.fd, self._drain)
        self._schedule()  # frames may be waiting already: their notification may have been consumed

    # ---- receiving -----------------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.loop.call_soon(self._scheduled_drain)

    def _scheduled_drain(self) -> None:
        self._scheduled = False
        self._drain()

    def drain(self) -> None:
        """Receive what is waiting now (up to `burst` messages) instead of on the loop's next turn."""
        self._drain()

    def kick(self) -> None:
        """Schedule a drain (a safety net against a lost edge; cheap when nothing is pending)."""
        self._schedule()

    def _drain(self) -> None:
        """Receive up to `burst` messages, then let the loop run (rescheduling when more may wait)."""
        if self.closed or self._draining:
            return
        self._draining = True
        recv, get, on_message = self._recv, self._get, self.on_message
        sock = self.sock
        try:
            if self._pending:
                self._flush_pending()
            for _ in range(self.burst):
                try:  # zero-copy Frames: `more` comes with the frame (no getsockopt: its enum lookup costs more)
                    frame = recv(NOBLOCK, False)
                except zmq.Again:
                    if self._pending:  # the connection a pending send waits for may have completed meanwhile
                        self._check()
                    return
                except zmq.ZMQError:  # closed or terminated under us
                    return
                parts = [frame.bytes]
                while frame.more:
                    frame = recv(NOBLOCK, False)
                    parts.append(frame.bytes)
                try:
                    on_message(parts)
                except Exception:  # a handler bug must not stop the socket
                    log.exception("message handler failed", extra={"event": "transport.loop.handler_error",
                                                                   "socket": self.name})
                if self.closed or sock is not self.sock:
                    return
                events = get(EVENTS)
                if not events & POLLIN:  # nothing more waiting (cheaper than a receive raising Again)
                    if self._pending and events & POLLOUT:
                        self._schedule()
                    return
            self._schedule()  # burst used up: continue after the loop's other callbacks
        finally:
            self._draining = False

    # ---- sending -------------------------------------------------------------------------------

    def send(self, frames: list) -> bool:
        """Queue a multipart message without waiting; False (see `errno`) when it cannot be queued."""
        send = self._send
        try:
            last = len(frames) - 1
            for i in range(last):
                send(frames[i], MORE_NOBLOCK)
            send(frames[last], NOBLOCK)
            ok = True
        except zmq.ZMQError as exc:
            self.errno = exc.errno
            ok = False
        if not self._draining and not self._scheduled and not self.closed:
            self._check()
        return ok

    def _check(self) -> None:
        """After a send outside a drain: schedule one when input (or a pending send's chance) is waiting."""
        try:
            events = self._get(EVENTS)
        except zmq.ZMQError:
            return
        if events & POLLIN or (self._pending and events & POLLOUT):
            self._schedule()

    def send_when_connected(self, frames: list) -> asyncio.Future:
        """Send frames as soon as the socket takes them; the Future is done then, cancelled on close."""
        fut = self.loop.create_future()
        if self.closed:
            fut.cancel()
            return fut
        self._pending.append((frames, fut))
        self._flush_pending()
        if not self._draining and not self._scheduled:
            self._check()
        return fut

    def _flush_pending(self) -> None:
        send = self._send
        while self._pending:
            frames, fut = self._pending[0]
            if fut.done():  # cancelled by its owner
                self._pending.pop(0)
                continue
            try:
                last = len(frames) - 1
                for i in range(last):
                    send(frames[i], MORE_NOBLOCK)
                send(frames[last], NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                self._pending.pop(0)
                fut.set_exception(exc)
                fut.exception()  # retrieved: never reported to the loop's exception handler
                continue
            self._pending.pop(0)
            fut.set_result(None)

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self, linger: int | None = 0) -> None:
        """Stop watching the socket, cancel pending sends and close it."""
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self.fd)
        except Exception:  # the loop may be closed already
            pass
        for _, fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self.sock.close(linger=linger)

    def getsockopt(self, option: int):
        return self.sock.getsockopt(option)


# ---- socket factories for the DEALER/ROUTER links (hive <-> orchestrator, worker <-> hive) ------------

HWM = 20000  # frames queued per peer before a send is dropped (counted)


def make_dealer(ctx: zmq.Context, identity: str, address: str,
                interval_s: float = HEARTBEAT_INTERVAL_S,
                expiry_s: float = HEARTBEAT_INTERVAL_S * HEARTBEAT_LIVENESS,
                curve: CurveKeys | None = None, server_role: str = "") -> zmq.Socket:
    """Return a DEALER with our identity connected to an upstream ROUTER (linger 0, immediate).

    With curve keys the link is a CURVE client of server_role (encrypted, and refused unless listed there).

    A connection attempt can never hang: the TCP connect is bounded by CONNECT_TIMEOUT (a SYN sent
    from a stale source address during a partition is abandoned after about a second instead of
    being retried by the kernel for minutes), the ZMTP handshake by HANDSHAKE_IVL, and an
    established connection that went silent is closed by ZMTP heartbeats (PING every interval,
    closed after max(2 s, 3 x expiry) without traffic; TTL tells the ROUTER to do the same) and TCP
    keepalive.  libzmq then reconnects on its own (RECONNECT_IVL).  These bounds sit well past our
    own expiry: losses are detected by AMDP heartbeats, and a CPU-starved peer whose I/O thread
    answers PINGs late must not have its connection (and the frames queued on it) torn down.
    """
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on completed connections: no stale backlog to a dead peer
    sock.setsockopt(zmq.RECONNECT_IVL, 50)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    for option, value in link_options(interval_s, expiry_s).items():
        sock.setsockopt(option, value)
    sock.setsockopt(zmq.ROUTING_ID, identity.encode())
    if curve is not None:
        secure_client(sock, curve, server_role)
    sock.connect(address)
    return sock


def link_options(interval_s: float, expiry_s: float) -> dict[int, int]:
    """Return the socket options that bound connect, handshake and silence on a DEALER link (ms / s)."""
    dead_ms = int(max(2.0, 3 * expiry_s) * 1000)  # a link silent this long is dead: well past our own expiry
    return {
        zmq.CONNECT_TIMEOUT: int(max(1.0, expiry_s) * 1000),
        zmq.HANDSHAKE_IVL: dead_ms,
        zmq.HEARTBEAT_IVL: max(100, int(interval_s * 1000)),
        zmq.HEARTBEAT_TIMEOUT: dead_ms,
        zmq.HEARTBEAT_TTL: min(dead_ms, 6_553_500),
        zmq.TCP_KEEPALIVE: 1,
        zmq.TCP_KEEPALIVE_IDLE: max(1, math.ceil(expiry_s)),
        zmq.TCP_KEEPALIVE_INTVL: 1,
        zmq.TCP_KEEPALIVE_CNT: 3,
    }


def make_router(ctx: zmq.Context, address: str, curve: CurveKeys | None = None, gate=None) -> zmq.Socket:
    """Return a bound ROUTER (linger 0, mandatory routing, handover); with curve a CURVE server watched by gate."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if curve is not None:
        secure_server(sock, curve, "router")
    sock.bind(address)
    if gate is not None:
        gate.watch(sock, "router")
    return sock


def bound_port(sock) -> int:
    """Return the TCP port a socket is bound to."""
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    return int(endpoint.rsplit(":", 1)[1])


def send_nowait(sock, frames: list) -> bool:
    """Send frames without waiting on a LoopSocket (or a plain socket); False when they cannot be queued."""
    if isinstance(sock, LoopSocket):
        return sock.send(frames)
    try:
        sock.send_multipart(frames, NOBLOCK)
    except zmq.ZMQError:
        return False
    return True


def send_when_connected(sock: LoopSocket, frames: list) -> asyncio.Future:
    """Queue frames until the socket has a completed connection; see LoopSocket.send_when_connected."""
    return sock.send_when_connected(frames)
