"""A loopback HTTP proxy that buffers each response whole before passing it on: what a client sees from a
server (or middlebox) that does not stream. Self-tests put it in front of the API to show that the
streaming check fails on a buffered stream."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

HEAD_END = b"\r\n\r\n"


def close_request(head: bytes) -> bytes:
    """The request head with any Connection header replaced by `Connection: close` (one exchange per socket)."""
    lines = [ln for ln in head.split(b"\r\n") if ln and not ln.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + HEAD_END


def body_length(head: bytes) -> int:
    """Content-Length of a request head (0 when absent)."""
    for ln in head.split(b"\r\n")[1:]:
        name, _, value = ln.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0


class BufferingProxy:
    """Listens on 127.0.0.1 (a free port); each connection's response is read to EOF, then sent at once."""

    def __init__(self, upstream_url: str, timeout_s: float = 30.0):
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.timeout_s = timeout_s
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="apiary-buffering-proxy", daemon=True)
        self.exchanges = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> "BufferingProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._exchange, args=(conn,), daemon=True, name="apiary-proxy-conn").start()

    def _exchange(self, conn: socket.socket) -> None:
        """Forward one request, read the whole response, then write it back and close."""
        with conn:
            conn.settimeout(self.timeout_s)
            head, body = self._read_request(conn)
            if head is None:
                return
            with socket.create_connection(self.upstream, timeout=self.timeout_s) as up:
                up.sendall(close_request(head) + body)
                response = read_to_eof(up, time.monotonic() + self.timeout_s)
            conn.sendall(response)
            self.exchanges += 1

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[bytes | None, bytes]:
        data = b""
        while HEAD_END not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            data += chunk
        head, _, body = data.partition(HEAD_END)
        while len(body) < body_length(head):
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head, body


def read_to_eof(sock: socket.socket, deadline: float) -> bytes:
    """Everything the peer sends until it closes, or until the deadline (monotonic)."""
    out = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    return out


def route_through_buffering_proxy(world: Any) -> BufferingProxy:
    """Acts: the World's client talks to the API through a new BufferingProxy until the scenario closes."""
    proxy = BufferingProxy(world.client.base_url).start()
    original, world.client.base_url = world.client.base_url, proxy.url

    def undo() -> None:
        world.client.base_url = original
        proxy.stop()
    world.on_close(undo)
    return proxy
