"""The worker's side of the engine pipe: start/stop the engine subprocess, send commands, read token lines."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
from typing import Callable

from services.protocol import dumps, loads

log = logging.getLogger("mock-worker")

ENGINE_CMD = (sys.executable, "-m", "services.mock_worker.engine")
LINE_LIMIT = 4 << 20  # a longer line is dropped (logged), as StreamReader's limit did
BURST = 64  # lines handled back to back before the loop gets a turn (the tick loop must not starve)


class _EngineProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Split the engine's stdout into lines in the transport's callback and hand each to `on_line` (no
    StreamReader, no task wake-up per line); stdin is managed as by create_subprocess_exec.  `eof` is
    done once stdout closed and every line before it was handled."""

    def __init__(self, on_line: Callable[[bytes], None], loop: asyncio.AbstractEventLoop):
        super().__init__(limit=LINE_LIMIT, loop=loop)
        self._on_line = on_line
        self._loop = loop
        self._partial = b""
        self._lines: collections.deque[bytes] = collections.deque()
        self._scheduled = False
        self._closed = False
        self.eof: asyncio.Future = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            super().pipe_data_received(fd, data)
            return
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > LINE_LIMIT:
            self._partial = b""
            log.warning("engine line too long; dropped", extra={"event": "engine_bad_line"})
        self._lines.extend(lines)
        if not self._scheduled:
            self._handle()

    def _handle(self) -> None:
        self._scheduled = False
        lines, on_line = self._lines, self._on_line
        for _ in range(BURST):
            if not lines:
                break
            line = lines.popleft()
            if line:
                on_line(line)
        if lines:
            self._scheduled = True
            self._loop.call_soon(self._handle)
        elif self._closed and not self.eof.done():
            self.eof.set_result(None)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._closed = True
            if not self._scheduled:
                self._handle()
        super().pipe_connection_lost(fd, exc)


class EngineClient:
    """Own one engine subprocess; call on_line for each output line and on_exit when it dies."""

    def __init__(self, on_line: Callable[[dict], None], on_exit: Callable[[int | None], None]):
        self.on_line = on_line
        self.on_exit = on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self.stopping = False
        self.restarts = 0

    async def start(self) -> None:
        """Spawn the engine; its stdout lines go to on_line as they arrive, its exit to on_exit."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _EngineProtocol(self._line, loop), *ENGINE_CMD, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=None)
        self.proc = asyncio.subprocess.Process(transport, protocol, loop)
        self._reader = asyncio.ensure_future(self.watch(self.proc, protocol))
        log.info("engine started", extra={"event": "engine_started", "pid": self.proc.pid})

    @property
    def pid(self) -> int | None:
        """Return the engine's pid (None before start)."""
        return self.proc.pid if self.proc else None

    def send(self, command: dict) -> bool:
        """Write one command line to the engine; False when the pipe is gone."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return False
        try:
            proc.stdin.write(dumps(command) + b"\n")
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False
        return True

    def _line(self, raw: bytes) -> None:
        try:
            line = loads(raw)
        except ValueError:
            log.warning("bad engine line", extra={"event": "engine_bad_line"})
            return
        try:
            self.on_line(line)
        except Exception:  # a handler bug must not stop the lines after it
            log.exception("engine line handler failed", extra={"event": "engine_line_error"})

    async def watch(self, proc: asyncio.subprocess.Process, protocol: _EngineProtocol) -> None:
        """Once every stdout line was handled and the engine exited, report the exit."""
        await protocol.eof
        code = await proc.wait()
        if not self.stopping and proc is self.proc:
            log.error("engine exited", extra={"event": "engine_exited", "exit_code": code})
            self.on_exit(code)

    async def restart(self) -> None:
        """Start a fresh engine after a death."""
        self.restarts += 1
        await self.start()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Close the engine's stdin (it exits on EOF) and wait; kill it if it lingers."""
        self.stopping = True
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
