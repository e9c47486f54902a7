"""Fixtures of the toxiproxy tests: the server in a thread with its API on loopback, and an upstream on
loopback that echoes ("ECHO\\n" first) or sends N bytes in one write and closes ("SEND N\\n" first),
recording the size of every read it made."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from harness.toxiproxy import ToxiServer


class Upstream:
    """A threaded TCP server on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.reads: list[int] = []        # sizes of the echo reads, in order
        self.errors: list[str] = []
        self.closed_at: list[float] = []  # when a SEND connection was closed by the server
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with conn:
                head = b""
                while b"\n" not in head:
                    part = conn.recv(64)
                    if not part:
                        return
                    head += part
                line, rest = head.split(b"\n", 1)
                if line.startswith(b"SEND "):
                    conn.sendall(b"x" * int(line.split()[1]))
                    self.closed_at.append(time.monotonic())
                    return
                if rest:
                    self.reads.append(len(rest))
                    conn.sendall(rest)
                while data := conn.recv(65536):
                    self.reads.append(len(data))
                    conn.sendall(data)
        except OSError as exc:
            self.errors.append(repr(exc))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def upstream():
    up = Upstream()
    yield up
    up.close()


@pytest.fixture()
def toxi():
    """(server, api base URL); every proxy and the loop are stopped afterwards."""
    server = ToxiServer()
    port = server.start("127.0.0.1", 0)
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def proxy(toxi, upstream):
    """A proxy "p" to the upstream, made through the API; yields (api URL, its listen port)."""
    _, api = toxi
    r = requests.post(api + "/proxies", json={"name": "p", "upstream": upstream.addr, "listen": "127.0.0.1:0"}, timeout=5)
    assert r.status_code == 201, r.text
    yield api, int(r.json()["listen"].rsplit(":", 1)[1])


def add_toxic(api: str, **body) -> dict:
    r = requests.post(api + "/proxies/p/toxics", json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def connect(port: int, mode: bytes = b"ECHO\n", timeout_s: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(mode)
    return s


def round_trip(s: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for payload to come back through an echo connection."""
    t0 = time.perf_counter()
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        part = s.recv(65536)
        assert part, f"connection closed after {len(got)} of {len(payload)} bytes"
        got += part
    assert got == payload
    return time.perf_counter() - t0


def recv_all(s: socket.socket) -> tuple[bytes, list[int]]:
    """Everything until EOF, and the size of each read."""
    data, sizes = b"", []
    while part := s.recv(65536):
        data += part
        sizes.append(len(part))
    return data, sizes
