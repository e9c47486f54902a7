"""Probes that prove a link-quality toxic acts (kinds_quality.py verify()): one TCP connection from src_ip to
`addr` (the steering's twin proxy, whose upstream is a sink in dst's namespace: "SEND n\\n" -> n bytes;
other bytes are counted and the count answered at EOF, harness/nemesis/steering.Sink), observed from the
client side. Each returns (held, evidence); with no toxic on the path each returns held=False."""
from __future__ import annotations

import socket
import time
from typing import Callable, NamedTuple

SockOf = Callable[[], socket.socket]


def connect(sock_of: SockOf, src_ip: str, addr: str, timeout_s: float) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = sock_of()
    s.bind((src_ip, 0))
    s.settimeout(timeout_s)
    s.connect((host, int(port)))
    return s


class Received(NamedTuple):
    """What one read-until-the-end saw: bytes, how it ended (eof, reset, timeout, limit), reads, last byte's time."""

    bytes: int
    ended: str
    reads: int
    last_at: float | None        # time.perf_counter() when the last data arrived


def receive(s: socket.socket, deadline: float, limit: int | None = None) -> Received:
    """Read until the end, the deadline (monotonic) or `limit` bytes."""
    got, reads, last = 0, 0, None
    while limit is None or got < limit:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return Received(got, "reset", reads, last)
        except (socket.timeout, TimeoutError):
            return Received(got, "timeout", reads, last)
        if not data:
            return Received(got, "eof", reads, last)
        got, reads, last = got + len(data), reads + 1, time.perf_counter()
    return Received(got, "limit", reads, last)


def read_all(s: socket.socket, deadline: float) -> tuple[int, str]:
    """Bytes read until the end, and how it ended: eof, reset, timeout."""
    r = receive(s, deadline)
    return r.bytes, r.ended


def open_probe(sock_of: SockOf, src_ip: str, addr: str, timeout_s: float) -> tuple[socket.socket | None, dict]:
    """(the probe's connected socket, {}), or (None, the evidence of why it could not connect)."""
    try:
        return connect(sock_of, src_ip, addr, timeout_s), {}
    except OSError as exc:
        return None, {"why": f"probe connect failed: {exc!r}"}


def probe_reset(sock_of: SockOf, src_ip: str, addr: str, within_s: float) -> tuple[bool, dict]:
    """reset_peer: after data flows both ways is asked for, the probe connection gets ECONNRESET within within_s."""
    t0 = time.monotonic()
    s, why = open_probe(sock_of, src_ip, addr, within_s)
    if s is None:
        return False, why
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
    s, why = open_probe(sock_of, src_ip, addr, timeout_s)
    if s is None:
        return False, why
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
    s, why = open_probe(sock_of, src_ip, addr, window_s + 2)
    if s is None:
        return False, why
    try:
        s.sendall(b"SEND 1000\n")
        got, ended = read_all(s, t0 + window_s)
    except OSError as exc:
        return False, {"why": f"probe failed: {exc!r}"}
    finally:
        s.close()
    return got == 0, {"bytes": got, "ended": ended, "window_s": window_s}


def probe_sliced(sock_of: SockOf, src_ip: str, addr: str, stream: str, size: int, average: int, delay_us: int,
                 timeout_s: float) -> tuple[bool, dict]:
    """slicer: `size` bytes cross the link as about size/average pieces, delay_us apart: the transfer takes at
    least half of (pieces - 1) x delay, and downstream arrives in at least a quarter as many reads (a
    transfer in one piece takes ~0 s and one read; TCP may merge some pieces, not most)."""
    pieces = max(1, size // max(1, average))
    want_s = 0.5 * (pieces - 1) * delay_us / 1e6
    t0 = time.monotonic()
    s, why = open_probe(sock_of, src_ip, addr, timeout_s)
    if s is None:
        return False, why
    reads = 0
    try:
        start = time.perf_counter()
        if stream == "downstream":
            s.sendall(b"SEND %d\n" % size)
            got, _, reads, _ = receive(s, t0 + timeout_s, size)
        else:
            s.sendall(b"u" * size)
            s.shutdown(socket.SHUT_WR)
            got = int(s.recv(64) or 0)
        took = time.perf_counter() - start
    except (OSError, ValueError) as exc:
        return False, {"why": f"probe failed: {exc!r}"}
    finally:
        s.close()
    enough_reads = stream != "downstream" or reads >= max(2, pieces // 4)
    evidence = {"stream": stream, "bytes": got, "pieces_expected": pieces, "reads": reads, "took_s": round(took, 4),
                "want_s": round(want_s, 4)}
    return got >= size and took >= want_s and enough_reads, evidence


def probe_slow_close(sock_of: SockOf, src_ip: str, addr: str, stream: str, delay_ms: float,
                     timeout_s: float) -> tuple[bool, dict]:
    """slow_close: the end of the stream arrives delay_ms late. downstream: the sink sends 100 bytes and
    closes; the probe times the last byte to the EOF. upstream: the probe half-closes after its bytes; the
    sink answers their count only at its EOF, which the proxy passes on late. Held when the gap is at least
    90 % of the delay (without the toxic it is ~0)."""
    want_s = 0.9 * delay_ms / 1000
    t0 = time.monotonic()
    s, why = open_probe(sock_of, src_ip, addr, timeout_s)
    if s is None:
        return False, why
    try:
        if stream == "downstream":
            s.sendall(b"SEND 100\n")
            r = receive(s, t0 + timeout_s)
            gap = time.perf_counter() - (r.last_at or time.perf_counter())
            ok = r.bytes == 100 and r.ended == "eof"
        else:
            s.sendall(b"u" * 100)
            start = time.perf_counter()
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(64)
            gap = time.perf_counter() - start
            ok = reply == b"100"
    except (OSError, ValueError) as exc:
        return False, {"why": f"probe failed: {exc!r}"}
    finally:
        s.close()
    return ok and gap >= want_s, {"stream": stream, "close_gap_s": round(gap, 4), "want_s": round(want_s, 4)}
