"""Probes that prove a link-quality toxic acts (kinds_quality.py verify()): one TCP connection from src_ip to
`addr` (the steering's twin proxy, whose upstream is a sink in dst's namespace: "SEND n\\n" -> n bytes;
other bytes are counted and the count answered at EOF, harness/nemesis/steering.Sink), observed from the
client side. Each returns (held, evidence); with no toxic on the path each returns held=False."""
from __future__ import annotations

import socket
import time
from typing import Callable

SockOf = Callable[[], socket.socket]


def connect(sock_of: SockOf, src_ip: str, addr: str, timeout_s: float) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = sock_of()
    s.bind((src_ip, 0))
    s.settimeout(timeout_s)
    s.connect((host, int(port)))
    return s


def read_all(s: socket.socket, deadline: float) -> tuple[int, str]:
    """Bytes read until the end, and how it ended: eof, reset, timeout."""
    got = 0
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return got, "reset"
        except (socket.timeout, TimeoutError):
            return got, "timeout"
        if not data:
            return got, "eof"
        got += len(data)


def probe_reset(sock_of: SockOf, src_ip: str, addr: str, within_s: float) -> tuple[bool, dict]:
    """reset_peer: after data flows both ways is asked for, the probe connection gets ECONNRESET within within_s."""
    t0 = time.monotonic()
    try:
        s = connect(sock_of, src_ip, addr, within_s)
    except OSError as exc:
        return False, {"why": f"probe connect failed: {exc!r}"}
    try:
        try:
            s.sendall(b"SEND 4096\n")
        except (ConnectionResetError, BrokenPipeError):
            return True, {"ended": "reset", "bytes": 0, "after_s": round(time.monotonic() - t0, 3)}
        got, ended = read_all(s, t0 + within_s)
    finally:
        s.close()
    return ended == "reset", {"ended": ended, "bytes": got, "after_s": round(time.monotonic() - t0, 3),
                              "want": f"ECONNRESET within {within_s}s"}


def probe_limit(sock_of: SockOf, src_ip: str, addr: str, stream: str, limit: int, timeout_s: float) -> tuple[bool, dict]:
    """limit_data: downstream, asking for 2 x limit + 1000 bytes yields exactly `limit` then the end;
    upstream, sending that many ends the connection without the sink's count of them."""
    size = 2 * limit + 1000
    t0 = time.monotonic()
    try:
        s = connect(sock_of, src_ip, addr, timeout_s)
    except OSError as exc:
        return False, {"why": f"probe connect failed: {exc!r}"}
    try:
        if stream == "downstream":
            s.sendall(b"SEND %d\n" % size)
            got, ended = read_all(s, t0 + timeout_s)
            return got == limit and ended in ("eof", "reset"), {"stream": stream, "asked": size, "bytes": got,
                                                                "ended": ended, "want_bytes": limit}
        try:
            s.sendall(b"u" * size)
            s.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError) as exc:
            return True, {"stream": stream, "sent": size, "ended": f"send failed: {exc!r}"[:120]}
        reply = b""
        deadline = t0 + timeout_s
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = s.recv(64)
            except ConnectionResetError:
                ended = "reset"
                break
            except (socket.timeout, TimeoutError):
                ended = "timeout"
                break
            if not data:
                ended = "eof"
                break
            reply += data
        counted = int(reply) if reply.isdigit() else None
        return ended in ("eof", "reset") and counted != size, {"stream": stream, "sent": size, "sink_counted": counted,
                                                               "ended": ended, "want": f"closed before {size} B arrived"}
    except OSError as exc:
        return False, {"why": f"probe failed: {exc!r}"}
    finally:
        s.close()


def probe_silent(sock_of: SockOf, src_ip: str, addr: str, window_s: float) -> tuple[bool, dict]:
    """blackhole (timeout): asking for 1000 bytes yields none within window_s (a silent close counts too)."""
    t0 = time.monotonic()
    try:
        s = connect(sock_of, src_ip, addr, window_s + 2)
    except OSError as exc:
        return False, {"why": f"probe connect failed: {exc!r}"}
    try:
        s.sendall(b"SEND 1000\n")
        got, ended = read_all(s, t0 + window_s)
    except OSError as exc:
        return False, {"why": f"probe failed: {exc!r}"}
    finally:
        s.close()
    return got == 0, {"bytes": got, "ended": ended, "window_s": window_s}
