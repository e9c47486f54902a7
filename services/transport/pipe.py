"""Unix pipe transport: framed messages over a subprocess's stdin/stdout or any pair of fds.

Two framings:

* ``length`` (default): a 4-byte big-endian payload length, then the payload (binary safe).
* ``line``: one message per ``\\n``-terminated line. ``line_encoding="base64"`` (default) is
  binary safe; ``line_encoding="raw"`` sends the payload as is (it must not contain ``\\n``),
  which lets ordinary text tools (``grep``, ``awk``, ``print()``) be pipeline stages.

Addresses: ``pipe://stdio`` (this process's stdin/stdout) and ``pipe://fd/R/W`` (R or W may be
``-``). ``bind`` and ``connect`` are the same for pipes. Receive timeouts use ``select()``,
which works on pipes on Linux and macOS only. Anything else that writes to the same stdout
corrupts the stream: log to stderr.
"""

from __future__ import annotations

import binascii
import collections
import logging
import os
import select
import struct
import subprocess
import sys
import time
from typing import Any, Iterable, Sequence

from .base import Transport, TransportClosed, TransportError, TransportOptions

log = logging.getLogger(__name__)

FRAMINGS = ("line", "length")
LINE_ENCODINGS = ("base64", "raw")
READ_CHUNK = 1 << 16
PROCESS_EXIT_TIMEOUT_S = 5.0
_HEADER = struct.Struct(">I")
_PACK = _HEADER.pack
_WRITE = os.write


def _fd_of(end: Any) -> int | None:
    """Return the fd of an int or a file object (flushing it first), or None."""
    if end is None or isinstance(end, int):
        return end
    flush = getattr(end, "flush", None)
    if flush is not None and getattr(end, "writable", lambda: False)():
        flush()
    return end.fileno()


class PipeTransport(Transport):
    """Length- or line-framed messages over a read fd and a write fd (see the module docstring)."""

    kind = "pipe"

    def __init__(self, reader: Any = None, writer: Any = None, *, framing: str = "length",
                 line_encoding: str = "base64", options: TransportOptions | None = None,
                 close_fds: bool = True, process: subprocess.Popen | None = None) -> None:
        """Wrap reader/writer (fds or binary file objects); close_fds=True closes them on close()."""
        super().__init__(options)
        if framing not in FRAMINGS:
            raise ValueError(f"unknown pipe framing {framing!r}; allowed: {', '.join(FRAMINGS)}")
        if line_encoding not in LINE_ENCODINGS:
            raise ValueError(f"unknown line_encoding {line_encoding!r}; allowed: {', '.join(LINE_ENCODINGS)}")
        self.framing = framing
        self.line_encoding = line_encoding
        self.process = process
        self._close_fds = close_fds
        self._keep = (reader, writer)  # keep file objects alive while we use their fds
        self._rfd = _fd_of(reader)
        self._wfd = _fd_of(writer)
        self._buf = b""  # bytes read but not yet a whole message
        self._ready: collections.deque[bytes] = collections.deque()  # whole messages not yet returned
        self._eof = False
        self._max = self.options.max_message_size
        line = framing == "line"
        self._parse = self._parse_line if line else self._parse_length
        self._encode = (binascii.b2a_base64 if line_encoding == "base64" else self._raw_line) if line else None

    @classmethod
    def spawn(cls, argv: Sequence[str], *, framing: str = "length", line_encoding: str = "base64",
              options: TransportOptions | None = None, env: dict | None = None,
              cwd: str | None = None) -> "PipeTransport":
        """Start argv; send() writes to its stdin, receive() reads its stdout; close() stops it."""
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env, cwd=cwd, bufsize=0)
        return cls(proc.stdout, proc.stdin, framing=framing, line_encoding=line_encoding,
                   options=options, process=proc)

    @classmethod
    def from_stdio(cls, *, framing: str = "length", line_encoding: str = "base64",
                   options: TransportOptions | None = None) -> "PipeTransport":
        """Use this process's stdin/stdout (the child side of spawn()); leaves fds 0 and 1 open."""
        return cls(sys.stdin.buffer, sys.stdout.buffer, framing=framing, line_encoding=line_encoding,
                   options=options, close_fds=False)

    def _attach(self, address: str) -> str:
        """Attach to pipe://stdio or pipe://fd/R/W."""
        if address == "pipe://stdio":
            self._keep = (sys.stdin.buffer, sys.stdout.buffer)
            self._rfd, self._wfd = _fd_of(sys.stdin.buffer), _fd_of(sys.stdout.buffer)
            self._close_fds = False
            return address
        parts = address.split("/")
        if address.startswith("pipe://fd/") and len(parts) == 5:
            try:
                ends = [None if p == "-" else int(p) for p in parts[3:5]]
            except ValueError:
                ends = None
            if ends is not None:
                self._rfd, self._wfd = ends
                self._keep = (None, None)
                return address
        raise ValueError(f"bad pipe address {address!r}: expected pipe://stdio or pipe://fd/READ/WRITE")

    def bind(self, address: str) -> str:
        """Same as connect(): pipes have nothing to listen on."""
        return self._attach(address)

    def connect(self, address: str) -> str:
        """Attach to pipe://stdio or pipe://fd/READ/WRITE and return the address."""
        return self._attach(address)

    @staticmethod
    def _raw_line(payload: bytes) -> bytes:
        """Frame a raw line; the payload must not contain a newline."""
        if b"\n" in payload:
            raise TransportError("pipe: a raw line payload contains a newline; use line_encoding base64")
        return payload + b"\n"

    def _frame(self, payload: bytes) -> bytes:
        """Return payload framed as one bytes object."""
        if self._encode is None:
            return _HEADER.pack(len(payload)) + payload
        return self._encode(payload)

    def send(self, payload: bytes) -> None:
        """Write one framed message with one system call."""
        data = _PACK(len(payload)) + payload if self._encode is None else self._encode(payload)
        try:
            done = _WRITE(self._wfd, data)
        except (TypeError, OSError) as exc:  # TypeError: no write end (None)
            self._write_failed(exc)
        if done < len(data):
            self._write([data[done:]])
        self.sent += 1

    def send_many(self, payloads: Iterable[bytes]) -> int:
        """Write many framed messages with as few system calls as possible."""
        frame = self._frame
        chunks: list[bytes] = []
        size = count = 0
        for payload in payloads:
            chunks.append(frame(payload))
            size += len(chunks[-1])
            count += 1
            if size >= READ_CHUNK:
                self._write([b"".join(chunks)])
                chunks, size = [], 0
        if chunks:
            self._write([b"".join(chunks)])
        self.sent += count
        return count

    def _write(self, chunks: list[bytes]) -> None:
        """Write every chunk, retrying partial writes."""
        data = memoryview(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        try:
            while data:
                data = data[_WRITE(self._wfd, data):]
        except (TypeError, OSError) as exc:
            self._write_failed(exc)

    def _write_failed(self, exc: Exception) -> None:
        """Raise the right error for a failed write."""
        if self._wfd is None:
            raise TransportClosed("pipe: closed") if self._closed else TransportError("pipe: no write end")
        self.errors += 1
        if isinstance(exc, BrokenPipeError):
            raise TransportClosed("pipe: the reader closed its end") from exc
        raise TransportError(f"pipe: write failed: {exc}") from exc

    def _check_size(self, size: int) -> None:
        """Refuse a message larger than max_message_size."""
        if 0 <= self._max < size:
            self.errors += 1
            raise TransportError(f"pipe: message of {size} bytes exceeds max_message_size {self._max}")

    def _parse_length(self, chunk: bytes) -> None:
        """Queue every complete length-framed message of pending bytes + chunk; keep the partial rest.

        Only the message straddling two reads is concatenated, never the whole chunk.
        """
        ready, unpack = self._ready, _HEADER.unpack_from
        pos, buf = 0, self._buf
        if buf:
            if len(buf) < 4:
                pos = min(4 - len(buf), len(chunk))
                buf += chunk[:pos]
                if len(buf) < 4:
                    self._buf = buf
                    return
            size = unpack(buf, 0)[0]
            self._check_size(size)
            need = 4 + size - len(buf)
            if need > len(chunk) - pos:
                self._buf = buf + chunk[pos:]
                return
            ready.append(buf[4:] + chunk[pos:pos + need])
            pos += need
        end_chunk = len(chunk)
        while end_chunk - pos >= 4:
            size = unpack(chunk, pos)[0]
            if 0 <= self._max < size:
                self._check_size(size)
            end = pos + 4 + size
            if end > end_chunk:
                break
            ready.append(chunk[pos + 4:end])
            pos = end
        self._buf = chunk[pos:] if pos else chunk

    def _parse_line(self, chunk: bytes) -> None:
        """Queue every complete line of pending bytes + chunk (decoded); keep the partial last line."""
        *lines, rest = (self._buf + chunk if self._buf else chunk).split(b"\n")
        if self.line_encoding == "base64":
            try:
                lines = [binascii.a2b_base64(line) for line in lines]
            except binascii.Error as exc:
                self.errors += 1
                raise TransportError(f"pipe: line is not valid base64: {exc}") from exc
        limit = self._max * 4 // 3 + 4 if self._max >= 0 and self.line_encoding == "base64" else self._max
        if limit >= 0 and (len(rest) > limit or any(len(line) > self._max for line in lines)):
            self.errors += 1
            raise TransportError(f"pipe: line longer than max_message_size {self._max}")
        self._ready.extend(lines)
        self._buf = rest

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the next payload, None on timeout; TransportClosed at end of stream."""
        ready = self._ready
        if not ready and not self._fill(timeout):
            return None
        self.received += 1
        return ready.popleft()

    def _fill(self, timeout: float | None) -> bool:
        """Read until at least one whole message is queued (True) or timeout (seconds) expires (False)."""
        fd = self._rfd
        if fd is None:
            raise TransportClosed("pipe: closed") if self._closed else TransportError("pipe: no read end")
        if timeout is None and self.options.receive_timeout_ms >= 0:
            timeout = self.options.receive_timeout_ms / 1000
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while not self._ready:
            if self._eof:
                if self._buf:
                    raise TransportError(f"pipe: stream ended inside a message ({len(self._buf)} bytes left)")
                raise TransportClosed("pipe: end of stream (the writer closed its end)")
            if deadline is not None and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return False
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError as exc:
                self.errors += 1
                raise TransportError(f"pipe: read failed: {exc}") from exc
            if not chunk:
                self._eof = True
                continue
            self._parse(chunk)
        return True

    def close_write(self) -> None:
        """Close only the write end, so the reader sees end of stream; receive() keeps working."""
        self._release(1)
        self._wfd = None

    def _release(self, index: int) -> None:
        """Close the reader (0) or writer (1) end if we own it."""
        end, fd = self._keep[index], (self._rfd, self._wfd)[index]
        if not self._close_fds or fd is None:
            return
        try:
            if end is not None and not isinstance(end, int):
                end.close()
            else:
                os.close(fd)
        except OSError:
            pass

    def close(self, linger_ms: int | None = None) -> None:
        """Close our fds (the peer sees end of stream) and stop a spawned process."""
        if self._closed:
            return
        self._closed = True
        self._release(1)
        self._release(0)
        self._rfd = self._wfd = None
        if self.process is not None:
            stop_process(self.process, PROCESS_EXIT_TIMEOUT_S)

    def _extra_stats(self) -> dict[str, Any]:
        """Add framing and the spawned process's pid and exit code."""
        proc = self.process
        return {"framing": self.framing, "pid": proc.pid if proc else None,
                "returncode": proc.poll() if proc else None}


def stop_process(proc: subprocess.Popen, timeout: float) -> int:
    """Wait up to timeout for proc to exit, then terminate, then kill; return its exit code."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("pipe: process %s did not exit within %.1f s after its stdin closed; terminating",
                    proc.pid, timeout)
    proc.terminate()
    try:
        return proc.wait(2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(2.0)
