"""The mock inference engine: a subprocess reading job commands on stdin and writing tokens to stdout.

Newline-framed JSON on a Unix pipe. In: {"op":"start","k":key,"p":prompt,"s":seed,"n":max_tokens,
"r":tokens_per_s} and {"op":"cancel","k":key}. Out: {"k":key,"i":index,"t":text} per token, the last
one with "end":"length"; a cancelled job answers {"k":key,"end":"cancelled","n":tokens_sent}.
Tokens come from services.protocol.generate_token, so the text is deterministic; runs until stdin closes.
"""
from __future__ import annotations

import asyncio
import os
import sys

from services.protocol import dumps, generate_token, loads


class Engine:
    """Run many jobs concurrently with loop timers, writing token lines to stdout."""

    def __init__(self, out) -> None:
        self.out = out
        self.loop = asyncio.get_running_loop()
        self.jobs: dict[int, asyncio.TimerHandle | None] = {}
        self._flush_pending = False

    def write(self, line: dict) -> None:
        """Queue one output line; flush once per loop turn."""
        try:
            self.out.write(dumps(line) + b"\n")
        except (BrokenPipeError, OSError):
            self.exit_quietly()
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Flush buffered output to the pipe."""
        self._flush_pending = False
        try:
            self.out.flush()
        except (BrokenPipeError, OSError):
            self.exit_quietly()

    @staticmethod
    def exit_quietly() -> None:
        """The worker is gone (its end of the pipe closed): exit without a traceback or flush error."""
        os._exit(0)

    def handle(self, command: dict) -> None:
        """Apply one input command."""
        op = command.get("op")
        if op == "start":
            self.start(int(command["k"]), command.get("p", ""), int(command.get("s", 0)),
                       int(command.get("n", 0)), float(command.get("r") or 0))
        elif op == "cancel":
            self.cancel(int(command["k"]))

    def start(self, key: int, prompt: str, seed: int, count: int, rate: float) -> None:
        """Begin emitting `count` tokens for job `key` at `rate` tokens/s (0 = at once)."""
        if count <= 0:
            self.write({"k": key, "end": "length", "n": 0})
            return
        self.jobs[key] = None
        start = self.loop.time()
        self.emit(key, prompt, seed, count, rate, start, 0)

    def emit(self, key: int, prompt: str, seed: int, count: int, rate: float, start: float, index: int) -> None:
        """Write token `index` (and any others already due), then arm the timer for the next one."""
        if key not in self.jobs:
            return
        now = self.loop.time()
        while index < count:
            due = start + index / rate if rate > 0 else now
            if due > now:
                self.jobs[key] = self.loop.call_at(due, self.emit, key, prompt, seed, count, rate, start, index)
                return
            line = {"k": key, "i": index, "t": generate_token(prompt, seed, index)}
            index += 1
            if index == count:
                line["end"] = "length"
                del self.jobs[key]
            self.write(line)

    def cancel(self, key: int) -> None:
        """Stop job `key` and confirm the cancellation."""
        if key not in self.jobs:
            return
        handle = self.jobs.pop(key)
        if handle is not None:
            handle.cancel()
        self.write({"k": key, "end": "cancelled"})


async def run() -> None:
    """Read commands from stdin until EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    engine = Engine(sys.stdout.buffer)
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            engine.handle(loads(line))
        except (ValueError, KeyError, TypeError):
            continue
    engine.flush()


def main() -> None:
    """Entry point of `python3 -m services.mock_worker.engine`."""
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
