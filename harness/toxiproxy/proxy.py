"""A Toxiproxy proxy: a TCP listener that forwards each accepted connection (a link) to its upstream,
through the toxics of each stream.

Each stream of a link is a reader task (reads at most QUEUE_BYTES ahead: a slow stage back-pressures the
sender through TCP) and a writer task (passes each chunk through the stream's toxics that apply to
this link, then writes it). The end of a stream is passed on as a half-close; the link closes when both
streams ended, a side fails (a reset is passed on as a reset), or a toxic closes it.

Sockets come from `sockets()` (default socket.socket): a caller may make them in another network
namespace; upstream sockets carry `mark` (SO_MARK) when given, so a steering rule can leave them alone.
"""
from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from typing import Any, Callable

from harness.toxiproxy.toxics import STREAMS, ApiError, Chunk, Toxic

CHUNK_BYTES = 32 * 1024
QUEUE_BYTES = 4 << 20     # read ahead of the toxics at most this much (latency pipelines within it)
CONNECT_TIMEOUT_S = 5.0
_ids = itertools.count(1)


def split_addr(addr: Any, field: str) -> tuple[str, int]:
    """("host", port) of "host:port"; ApiError naming the field otherwise."""
    if not isinstance(addr, str) or ":" not in addr:
        raise ApiError(f"bad proxy field: {field}: {addr!r}, want host:port")
    host, _, port = addr.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ApiError(f"bad proxy field: {field}: {addr!r}, port must be 0..65535")
    return host.strip("[]") or "0.0.0.0", int(port)


def _retrieve(task: asyncio.Task) -> None:
    """Mark a finished task's exception as seen (run() judges the link from the tasks it waits on)."""
    if not task.cancelled():
        task.exception()


class Stream:
    """One direction of a link: reads from `reader` (at most QUEUE_BYTES ahead), writes through the toxics
    to `writer`."""

    def __init__(self, link: "Link", direction: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.link, self.direction, self.reader, self.writer = link, direction, reader, writer
        self.queue: asyncio.Queue = asyncio.Queue()
        self.queued = 0                    # bytes read but not yet through the toxics
        self.space = asyncio.Event()
        self.busy = False                  # the writer is passing a chunk through the toxics
        self.bytes = 0

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.queued >= self.link.proxy.read_ahead:
                self.space.clear()
                await self.space.wait()
            data = await self.reader.read(CHUNK_BYTES)
            if data and not self.busy and self.queue.empty() and not self.link.toxics(self.direction):
                self.writer.write(data)            # the fast path: nothing queued and no toxic to pass
                self.bytes += len(data)
                await self.writer.drain()
                continue
            self.queued += len(data)
            self.queue.put_nowait(Chunk(data, loop.time()) if data else None)
            if not data:
                return

    async def write_loop(self) -> None:
        while True:
            item = await self.queue.get()
            self.busy = True
            if item is not None:
                self.queued -= len(item.data)
                self.space.set()
            toxics = self.link.toxics(self.direction)
            if item is None:
                await self.eof(toxics, 0)
                return
            await self.through(toxics, 0, item)
            self.busy = False

    async def through(self, toxics: list[Toxic], i: int, chunk: Chunk) -> None:
        if i == len(toxics):
            if chunk.data:
                self.writer.write(chunk.data)
                self.bytes += len(chunk.data)
                await self.writer.drain()
            return
        await toxics[i].pipe(self.link, chunk, lambda c: self.through(toxics, i + 1, c))

    async def eof(self, toxics: list[Toxic], i: int) -> None:
        if i < len(toxics):
            return await toxics[i].on_eof(self.link, lambda: self.eof(toxics, i + 1))
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()


class Link:
    """One proxied connection: client <-> proxy <-> upstream."""

    def __init__(self, proxy: "Proxy", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.proxy, self.id = proxy, next(_ids)
        self.client = (reader, writer)
        self.peer = writer.get_extra_info("peername")
        self.upstream: tuple | None = None
        self.streams: dict[str, Stream] = {}
        self.tasks: set[asyncio.Task] = set()
        self.attached: dict[int, asyncio.Task] = {}
        self.draws: dict[tuple[int, int], bool] = {}
        self.states: dict[int, dict] = {}
        self.closed = False
        self.reset = False
        self.releasing = False

    def state(self, toxic: Toxic) -> dict:
        """Per-link state of a toxic (bandwidth's clock, limit_data's count)."""
        return self.states.setdefault(id(toxic), {})

    def applies(self, toxic: Toxic) -> bool:
        key = (id(toxic), toxic.version)
        if key not in self.draws:
            self.draws[key] = toxic.applies()
        return self.draws[key]

    def toxics(self, direction: str) -> list[Toxic]:
        return [t for t in self.proxy.toxics.values() if t.stream == direction and self.applies(t)]

    def attach(self, toxic: Toxic) -> None:
        """Start the toxic's attach() on this link when it applies."""
        if not self.closed and self.applies(toxic):
            self.attached[id(toxic)] = self.spawn(toxic.attach(self))

    def detach(self, toxic: Toxic) -> None:
        task = self.attached.pop(id(toxic), None)
        if task:
            task.cancel()
        if not self.closed and self.draws.get((id(toxic), toxic.version)):
            toxic.detach(self)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_retrieve)   # a peer's reset ends a stream with an error the link already handles
        return task

    async def run(self) -> None:
        try:
            self.upstream = await asyncio.wait_for(self.proxy.connect_upstream(), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            self.close()
            return
        (cr, cw), (ur, uw) = self.client, self.upstream
        self.streams = {"upstream": Stream(self, "upstream", cr, uw), "downstream": Stream(self, "downstream", ur, cw)}
        for toxic in list(self.proxy.toxics.values()):
            self.attach(toxic)
        pumps = [self.spawn(s.read_loop()) for s in self.streams.values()]
        writers = [self.spawn(s.write_loop()) for s in self.streams.values()]
        try:
            done, _ = await asyncio.wait(pumps + writers, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            if not failed:
                await asyncio.wait(writers)
            if not self.releasing:
                self.close(reset=any(isinstance(t.exception(), ConnectionResetError) for t in failed))
        finally:
            if not self.releasing:        # release() closes the upstream side itself, when it is time
                self.close()

    def close(self, reset: bool = False) -> None:
        """Close both sides (reset: RST, via SO_LINGER 0) and stop the link's tasks; idempotent."""
        if self.closed:
            return
        self.closed, self.reset = True, reset
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        for pair in (self.client, self.upstream):
            if pair is None:
                continue
            writer = pair[1]
            if reset:
                sock = writer.get_extra_info("socket")
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except (OSError, AttributeError):
                    pass
                writer.transport.abort()
            else:
                writer.close()
        if self in self.proxy.links:
            for d, st in self.streams.items():
                self.proxy.carried[d] = self.proxy.carried.get(d, 0) + st.bytes
        self.proxy.links.discard(self)

    async def release(self, hold_s: float) -> bool:
        """Hand the connection back without the upstream seeing it end first: reset the client side (its
        owner reconnects, elsewhere), keep the upstream side open and silent until the upstream closes it
        (e.g. a ZeroMQ ROUTER handing the peer's identity over to its new connection) or hold_s passed,
        then close. True when the upstream closed it first."""
        if self.closed or self.releasing:
            return False
        self.releasing = True
        current = asyncio.current_task()
        stopping = [t for t in self.tasks if t is not current]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        writer = self.client[1]
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError):
            pass
        writer.transport.abort()
        released = False
        if self.upstream is not None:
            reader = self.upstream[0]
            try:
                async with asyncio.timeout(hold_s):
                    while await reader.read(CHUNK_BYTES):
                        pass
                released = True
            except (TimeoutError, OSError):
                pass
        self.close()
        return released

    async def drain_and_close(self) -> None:
        """Close after what was written is sent (limit_data)."""
        self.close()

    def to_json(self) -> dict:
        return {"id": self.id, "client": list(self.peer or ()),
                "bytes": {d: s.bytes for d, s in self.streams.items()}}


class Proxy:
    """A named listener -> upstream with its toxics (Toxiproxy's proxy)."""

    def __init__(self, name: str, listen: str, upstream: str, enabled: bool = True,
                 sockets: Callable[[], socket.socket] | None = None, mark: int | None = None):
        self.name, self.listen, self.upstream, self.enabled = name, listen, upstream, enabled
        split_addr(listen, "listen"), split_addr(upstream, "upstream")
        self.sockets = sockets or (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        self.mark = mark
        self.toxics: dict[str, Toxic] = {}
        self.links: set[Link] = set()
        self.accepted = 0
        self.carried: dict[str, int] = {}     # bytes per stream of the links that closed
        self.read_ahead = QUEUE_BYTES         # per stream: a smaller one leaves a slow link's backlog with its sender
        self.server: asyncio.base_events.Server | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxics.values()]}

    async def start(self) -> None:
        """Listen (a port 0 becomes the port the OS chose, kept across disable/enable)."""
        if self.server is not None:
            return
        host, port = split_addr(self.listen, "listen")
        sock = self.sockets()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ApiError(f"bad proxy field: listen: {self.listen!r}: {exc.strerror or exc}", 409
                           if exc.errno == 98 else 400) from None
        self.listen = f"{host}:{sock.getsockname()[1]}"
        self.server = await asyncio.start_server(self._accept, sock=sock)
        self.enabled = True

    async def stop(self) -> None:
        """Stop listening and close every link (Toxiproxy's disable, the `down` fault)."""
        self.enabled = False
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for link in list(self.links):
            link.close()

    async def connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = split_addr(self.upstream, "upstream")
        loop = asyncio.get_running_loop()
        addr = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=socket.AF_INET))[0][4]
        sock = self.sockets()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            await loop.sock_connect(sock, addr)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(self, reader, writer)
        self.links.add(link)
        self.accepted += 1
        await link.run()

    async def release(self, hold_s: float) -> list[bool]:
        """Stop listening and release every link (Link.release) at once; each link's result."""
        self.enabled = False
        server, self.server = self.server, None
        if server is not None:
            server.close()
        return list(await asyncio.gather(*(link.release(hold_s) for link in list(self.links))))

    def add_toxic(self, toxic: Toxic) -> Toxic:
        if toxic.name in self.toxics:
            raise ApiError(f"toxic already exists: name: {toxic.name!r}", 409)
        self.toxics[toxic.name] = toxic
        for link in list(self.links):
            link.attach(toxic)
        return toxic

    def get_toxic(self, name: str) -> Toxic:
        try:
            return self.toxics[name]
        except KeyError:
            raise ApiError(f"toxic not found: {name!r}", 404) from None

    def update_toxic(self, name: str, toxicity: float | None, attributes: dict) -> Toxic:
        """New attributes and toxicity (the links draw again); the toxic's timers restart."""
        toxic = self.get_toxic(name)
        for link in list(self.links):
            task = link.attached.pop(id(toxic), None)
            if task:
                task.cancel()
        toxic.attributes.update(attributes)
        if toxicity is not None:
            toxic.toxicity = toxicity
        toxic.version += 1
        for link in list(self.links):
            link.attach(toxic)
        return toxic

    def remove_toxic(self, name: str) -> None:
        toxic = self.get_toxic(name)
        del self.toxics[name]
        toxic.removed.set()
        for link in list(self.links):
            link.detach(toxic)

    def reset_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)


def stream_name(value: Any) -> str:
    if value not in STREAMS:
        raise ApiError(f"stream was invalid, can be either upstream or downstream: stream: {value!r}")
    return value
