"""Toxiproxy's toxics, with Toxiproxy's semantics: each acts on one stream of a link (upstream: client ->
server, downstream: server -> client) and applies to a link with probability `toxicity`, drawn once per
link when the toxic meets it.

A chunk is the data of one read and the loop time it was read at. A toxic's pipe() passes chunks on to
the next stage by awaiting emit() (or drops them, or closes the link); on_eof() passes the end of the
stream on; attach() runs while the toxic is on a link (the timers of timeout). Attributes are
Toxiproxy's: milliseconds, KB/s (1 KB = 1000 bytes), bytes, and microseconds for the slicer's delay.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

STREAMS = ("upstream", "downstream")
WAKE_LATE_S = 0.0003     # how late a timer wakes after its whole-ms epoll wait: calibrate_wake() measures it
EPOLL_SLACK = 0.001      # Linux's timer slack for poll/epoll timeouts: 0.1 % of the timeout (fs/select.c)
EMIT_S = 0.0003          # from the wake-up to the chunk written (wait_for's cancel, the emit): bench.toxiproxy
                         # (spinning out the last ms instead starves the harness's other threads of the GIL)
CATCH_UP_S = 0.05     # bandwidth: a stream behind its schedule by less than this catches up (timer lateness)


class ApiError(Exception):
    """An API error with Toxiproxy's body {"error": message, "status": code}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Chunk:
    data: bytes
    stamp: float          # loop.time() the data was read at (latency counts from it)


Emit = Callable[[Chunk], Awaitable[None]]


class Toxic:
    """Base: passes every chunk on unchanged. `fields` are the attributes and their defaults."""

    type = ""
    fields: dict[str, int] = {}

    def __init__(self, name: str, stream: str, toxicity: float, attributes: dict):
        self.name, self.stream, self.toxicity = name, stream, toxicity
        self.attributes = {**self.fields, **attributes}
        self.removed = asyncio.Event()     # set when the toxic leaves the proxy: waits end at once
        self.version = 0                   # bumped by an update: links draw the toxicity again

    def __getattr__(self, item: str) -> Any:
        try:
            return self.__dict__["attributes"][item]
        except KeyError:
            raise AttributeError(item) from None

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": dict(self.attributes)}

    def applies(self) -> bool:
        """The draw for one link: True with probability toxicity (never at 0, always at 1)."""
        return random.random() < self.toxicity

    async def pipe(self, link: Any, chunk: Chunk, emit: Emit) -> None:
        await emit(chunk)

    async def on_eof(self, link: Any, emit_eof: Callable[[], Awaitable[None]]) -> None:
        await emit_eof()

    async def attach(self, link: Any) -> None:
        """Runs while the toxic is on the link (cancelled when it leaves)."""

    def detach(self, link: Any) -> None:
        """The toxic left a link that is still open."""

    async def wait(self, delay_s: float) -> bool:
        """Sleep delay_s unless the toxic is removed first; True when it slept the whole delay."""
        if delay_s <= 0:
            return not self.removed.is_set()
        try:
            await asyncio.wait_for(self.removed.wait(), delay_s)
        except asyncio.TimeoutError:
            return True
        return False


# A chunk never leaves more than this before its due time. The wake is aimed early by the lateness measured
# when the server started; when the machine is quieter later, wakes come sooner and the aim is too early
# (seen: a 20 + 20 ms pair 1.35 ms short during a parallel test run), so a wake that early waits again
# (epoll rounds that wait up to a whole ms: late by under 1 ms, never early).
EARLY_OK_S = 0.0005


def whole_ms_wait(remaining_s: float) -> float:
    """The wait that wakes nearest `remaining_s` from now. asyncio's epoll wait sleeps whole milliseconds (a
    timeout is rounded up); Linux then adds its timer slack for poll and epoll (0.1 % of the timeout) and the
    wake-up comes WAKE_LATE_S after. So aim that much early and pick the nearest whole ms: the chunk leaves
    within about half a millisecond of its due time, early or late."""
    return max(0.0, round((remaining_s * (1 - EPOLL_SLACK) - WAKE_LATE_S - EMIT_S) * 1000) / 1000)


async def calibrate_wake(samples: int = 15, wait_s: float = 0.002) -> float:
    """Measure this loop's timer lateness (the lower quartile of `samples` waits of wait_s, the way a toxic
    waits; at most 1 ms) and use it for the latency toxic's waits; returns it. About 50 ms, once per proxy
    server. The quartile and the cap keep a server started on a busy machine from aiming every toxic early
    by that moment's load (seen: a 20 + 20 ms pair 1.4 ms short under a parallel test run)."""
    global WAKE_LATE_S
    loop, never = asyncio.get_running_loop(), asyncio.Event()
    late = []
    for _ in range(samples):
        t0 = loop.time()
        try:
            await asyncio.wait_for(never.wait(), wait_s)
        except asyncio.TimeoutError:
            pass
        late.append(loop.time() - t0 - wait_s)
    late.sort()
    WAKE_LATE_S = min(max(late[len(late) // 4], 0.0), 0.001)
    return WAKE_LATE_S


class Latency(Toxic):
    """Every chunk leaves `latency` ms (± up to `jitter` ms) after it was read; the stream stays pipelined."""

    type = "latency"
    fields = {"latency": 0, "jitter": 0}

    def delay_s(self) -> float:
        jitter = self.jitter
        return (self.latency + (random.uniform(-jitter, jitter) if jitter > 0 else 0)) / 1000

    async def pipe(self, link, chunk, emit):
        loop = asyncio.get_running_loop()
        due = chunk.stamp + self.delay_s()
        if await self.wait(whole_ms_wait(due - loop.time())) and due - loop.time() > EARLY_OK_S:
            await self.wait(due - loop.time())   # woke early: the loop is less late than when it was calibrated
        chunk.stamp = max(chunk.stamp, due)
        await emit(chunk)


class Bandwidth(Toxic):
    """At most `rate` KB/s: each piece of at most 100 ms worth leaves when the previous would have finished."""

    type = "bandwidth"
    fields = {"rate": 0}

    async def pipe(self, link, chunk, emit):
        rate = self.rate * 1000
        if rate <= 0:
            return await emit(chunk)
        loop, data, step = asyncio.get_running_loop(), chunk.data, max(1, int(rate / 10))
        state = link.state(self)
        while data:
            piece, data = data[:step], data[step:]
            free_at, now = state.get("free_at", 0.0), loop.time()
            start = free_at if now - free_at < CATCH_UP_S else now     # a late wake-up is made up for
            state["free_at"] = start + len(piece) / rate
            if not await self.wait(state["free_at"] - loop.time()):
                await emit(Chunk(piece + data, chunk.stamp))      # removed: the rest goes at once
                return
            await emit(Chunk(piece, chunk.stamp))


class SlowClose(Toxic):
    """The end of the stream is passed on `delay` ms late."""

    type = "slow_close"
    fields = {"delay": 0}

    async def on_eof(self, link, emit_eof):
        await self.wait(self.delay / 1000)
        await emit_eof()


class Timeout(Toxic):
    """A blackhole: data is dropped; the link closes after `timeout` ms (0: never), and when the toxic is
    removed (as Toxiproxy's cleanup does)."""

    type = "timeout"
    fields = {"timeout": 0}

    async def pipe(self, link, chunk, emit):
        return None

    async def attach(self, link):
        if self.timeout > 0 and await self.wait(self.timeout / 1000):
            link.close()

    def detach(self, link):
        link.close()


class ResetPeer(Toxic):
    """The first data in the stream starts a `timeout` ms timer, then the link is reset (RST, as an
    SO_LINGER 0 close); data meanwhile is dropped."""

    type = "reset_peer"
    fields = {"timeout": 0}

    async def pipe(self, link, chunk, emit):
        state = link.state(self)
        if "timer" not in state:
            state["timer"] = asyncio.get_running_loop().create_task(self._reset_later(link))

    async def _reset_later(self, link):
        if await self.wait(self.timeout / 1000):
            link.close(reset=True)


class Slicer(Toxic):
    """Each chunk is cut into pieces of about `average_size` bytes (± `size_variation`), `delay` µs apart."""

    type = "slicer"
    fields = {"average_size": 0, "size_variation": 0, "delay": 0}

    def cuts(self, start: int, end: int) -> list[tuple[int, int]]:
        """Toxiproxy's bisection: halves (moved by up to size_variation) until a piece is small enough."""
        if self.average_size <= 0 or (end - start) - self.average_size <= self.size_variation:
            return [(start, end)]
        mid = start + (end - start) // 2
        if self.size_variation > 0:
            mid += random.randrange(-self.size_variation, self.size_variation)
        mid = min(max(mid, start + 1), end - 1)
        return self.cuts(start, mid) + self.cuts(mid, end)

    async def pipe(self, link, chunk, emit):
        pieces = self.cuts(0, len(chunk.data))
        for i, (a, b) in enumerate(pieces):
            await emit(Chunk(chunk.data[a:b], chunk.stamp))
            if i + 1 < len(pieces) and not await self.wait(self.delay / 1_000_000):
                await emit(Chunk(chunk.data[b:], chunk.stamp))    # removed: the rest goes at once
                return


class LimitData(Toxic):
    """The link closes once `bytes` bytes passed in the stream (the chunk that crosses it is cut)."""

    type = "limit_data"
    fields = {"bytes": 0}

    async def pipe(self, link, chunk, emit):
        state = link.state(self)
        left = self.bytes - state.get("sent", 0)
        data = chunk.data[:max(0, left)]
        if data:
            state["sent"] = state.get("sent", 0) + len(data)
            await emit(Chunk(data, chunk.stamp))
        if state.get("sent", 0) >= self.bytes:
            await link.drain_and_close()


KINDS: dict[str, type[Toxic]] = {k.type: k for k in (Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData)}


def number(value: Any, field: str, lo: float, hi: float | None = None) -> float:
    """value when it is a number in lo..hi, else ApiError 400 naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None and value > hi):
        want = f"a number in {lo}..{hi}" if hi is not None else f"a number >= {lo}"
        raise ApiError(f"bad toxic field: {field}: {value!r}, want {want}")
    return value


def make_toxic(body: Any, existing: dict | None = None) -> Toxic:
    """A toxic from an API body {name?, type, stream?, toxicity?, attributes?}; ApiError naming the bad field."""
    if not isinstance(body, dict):
        raise ApiError("bad request body: want a JSON object")
    kind = KINDS.get(body.get("type")) if isinstance(body.get("type"), str) else None
    if kind is None:
        raise ApiError(f"invalid toxic type: type: {body.get('type')!r}, want one of {', '.join(KINDS)}")
    stream = body.get("stream", "downstream")
    if stream not in STREAMS:
        raise ApiError(f"stream was invalid, can be either upstream or downstream: stream: {stream!r}")
    name = body.get("name") or f"{kind.type}_{stream}"
    if not isinstance(name, str):
        raise ApiError(f"bad toxic field: name: {name!r}, want a string")
    toxicity = float(number(body.get("toxicity", 1.0), "toxicity", 0, 1))
    attributes = check_attributes(kind, body.get("attributes", {}))
    return kind(name, stream, toxicity, attributes)


def check_attributes(kind: type[Toxic], attributes: Any) -> dict:
    """The attributes when each is a known non-negative number of this toxic type; ApiError naming it."""
    if not isinstance(attributes, dict):
        raise ApiError(f"bad toxic field: attributes: {attributes!r}, want an object")
    for key, value in attributes.items():
        if key not in kind.fields:
            raise ApiError(f"bad toxic field: attributes.{key}: not an attribute of {kind.type} "
                           f"(known: {', '.join(kind.fields)})")
        number(value, f"attributes.{key}", 0)
    return dict(attributes)
