"""EventSubscriber: the one subscriber to the orchestrator's event PUB socket, for the harness, the tests and
the benchmarks (LocalStack.events() and apiary_suite.events hand out this class). A thread records every event with
its receive times (`_received`: monotonic, `_arrived`: UNIX); find/wait_for match a topic prefix and fields
before a deadline, after a monotonic instant or an index from mark(); find_gaps reports holes in `seq`."""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

import zmq

from services import protocol

Predicate = Callable[[dict], bool]


class EventTimeout(AssertionError):
    """An expected event was not seen in time (the message names topic, filter and what was seen)."""


class EventSubscriber:
    """A SUB socket on a background thread; `events` holds every decoded event with its receive times."""

    def __init__(self, url: str, topics: Iterable[str] = ("",), name: str = "events",
                 poll_ms: int = 50, context: zmq.Context | None = None, curve: "protocol.CurveKeys | None" = None):
        """curve: the stack's client keys (the PUB refuses a subscriber without a listed key)."""
        self.url = url
        self.curve = curve
        self.topics = tuple(topics)
        self.name = name
        self.poll_ms = poll_ms
        self._ctx = context or zmq.Context.instance()
        self._events: list[dict] = []
        self._bad: list[dict] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, connect_timeout_s: float = 5.0) -> "EventSubscriber":
        """Connect, subscribe and wait for the handshake so the caller's events are not missed (see `connected`)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"apiary-{self.name}", daemon=True)
        self._thread.start()
        self._connected.wait(connect_timeout_s)
        time.sleep(0.05)  # the subscription travels right after the handshake; let the PUB apply it
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def __enter__(self) -> "EventSubscriber":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        for t in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        if self.curve is not None:
            protocol.secure_client(sock, self.curve, "orchestrator")
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CONNECTED)
        sock.connect(self.url)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for s, _ in poller.poll(self.poll_ms):
                    if s is monitor:
                        msg = monitor.recv_multipart()
                        if int.from_bytes(msg[0][:2], "little") == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                            self._connected.set()
                        continue
                    frames = sock.recv_multipart()
                    self._ingest(frames, time.monotonic(), time.time())
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def _ingest(self, frames: list[bytes], received: float, arrived: float) -> None:
        self._connected.set()
        try:
            ev = protocol.decode_event(frames)
        except protocol.ProtocolError as exc:
            with self._cond:
                self._bad.append({"error": exc.code, "reason": exc.reason, "arrived": arrived,
                                  "frames": [bytes(f)[:200].hex() for f in frames]})
            return
        ev["_received"], ev["_arrived"] = received, arrived
        with self._cond:
            self._events.append(ev)
            self._cond.notify_all()

    # ---- queries --------------------------------------------------------------------------------
    @property
    def events(self) -> list[dict]:
        with self._cond:
            return list(self._events)

    @property
    def malformed(self) -> list[dict]:
        with self._cond:
            return list(self._bad)

    def mark(self) -> int:
        """Return the current event count: pass it as `since` to wait only for later events."""
        with self._cond:
            return len(self._events)

    def matching(self, topic: str | None = None, predicate: Predicate | None = None, since: int = 0,
                 after: float = 0.0, **fields: object) -> list[dict]:
        """Events from index `since`, received at or after monotonic `after`, whose topic starts with `topic`
        (prefix, like ZeroMQ) and whose fields match."""
        return [e for e in self.events[since:] if _match(e, topic, predicate, after, fields)]

    def find(self, topic: str, predicate: Predicate | None = None, timeout_s: float = 0.0, since: int = 0,
             after: float = 0.0, count: int = 1, **fields: object) -> dict | None:
        """The `count`-th matching event (see matching), waiting up to `timeout_s` for it; None if it did not come."""
        return self._await(topic, predicate, timeout_s, since, after, count, fields)[0]

    def wait_for(self, topic: str, predicate: Predicate | None = None, timeout_s: float = 5.0, since: int = 0,
                 after: float = 0.0, count: int = 1, **fields: object) -> dict:
        """Like find, but raise EventTimeout naming the topic, the fields and the topics seen when it did not come."""
        hit, got, seen = self._await(topic, predicate, timeout_s, since, after, count, fields)
        if hit is not None:
            return hit
        want = f"{count} x '{topic}'" + (f" with {fields}" if fields else "") + (" matching predicate" if predicate else "")
        window = "since mark" + (f" and after t={after:.3f}" if after else "")
        raise EventTimeout(f"{self.name}: did not see {want} within {timeout_s:.2f}s on {self.url} "
                           f"(got {got}; topics seen {window}: {seen or 'none'})")

    def _await(self, topic: str, predicate: Predicate | None, timeout_s: float, since: int, after: float,
               count: int, fields: dict) -> tuple[dict | None, int, list[str]]:
        """(the count-th match or None at the deadline, matches found, topics seen in the window)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                hits = [e for e in self._events[since:] if _match(e, topic, predicate, after, fields)]
                if len(hits) >= count:
                    return hits[count - 1], len(hits), []
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
            seen = sorted({e["topic"] for e in self._events[since:] if e["_received"] >= after})
        return None, len(hits), seen

    def gaps(self) -> list[dict]:
        """Seq gaps among received events: [{after, next, missing}] (a seq going down is a publisher restart)."""
        return find_gaps(self.events)


def find_gaps(events: list[dict]) -> list[dict]:
    """Return the holes in the seq numbering of events (in arrival order); resets (seq going down) are not gaps."""
    out = []
    prev = None
    for e in events:
        seq = e.get("seq")
        if not isinstance(seq, int):
            continue
        if prev is not None and seq > prev + 1:
            out.append({"after": prev, "next": seq, "missing": seq - prev - 1})
        prev = seq
    return out


def in_order(events: list[dict]) -> bool:
    """True when seq strictly increases in arrival order (ignoring publisher restarts is the caller's job)."""
    seqs = [e.get("seq") for e in events]
    return all(a < b for a, b in zip(seqs, seqs[1:]))


def _match(e: dict, topic: str | None, predicate: Predicate | None, after: float, fields: dict) -> bool:
    if topic and not str(e.get("topic", "")).startswith(topic):
        return False
    if after and e.get("_received", 0.0) < after:
        return False
    if any(e.get(k) != v for k, v in fields.items()):
        return False
    return predicate is None or bool(predicate(e))
