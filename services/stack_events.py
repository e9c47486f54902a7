"""EventTap: the local stack's event subscriber for tests and benchmarks (a thread on the orchestrator's
PUB socket recording (monotonic receive time, event); `find`/`wait_for` match topic and fields)."""
from __future__ import annotations

import threading
import time


class EventTap:
    """Subscribes to the orchestrator's PUB socket in a thread; records (monotonic receive time, event)."""

    def __init__(self, url: str, topics: tuple[str, ...] = ("",), curve=None):
        import zmq
        from services.protocol import decode_event, secure_client
        self._decode = decode_event
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if curve is not None:  # the stack's client keys: the PUB refuses subscribers it does not list
            secure_client(self._sock, curve, "orchestrator")
        self._sock.connect(url)
        self.events: list[tuple[float, dict]] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="event-tap")
        self._thread.start()

    def _run(self) -> None:
        import zmq
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            while True:
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t = time.monotonic()
                try:
                    event = self._decode(frames)
                except Exception as exc:  # record, never die
                    self.errors.append(repr(exc))
                    continue
                with self._cond:
                    self.events.append((t, event))
                    self._cond.notify_all()
        self._sock.close(0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def __enter__(self) -> "EventTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _match(event: dict, topic: str, fields: dict) -> bool:
        return event.get("topic") == topic and all(event.get(k) == v for k, v in fields.items())

    def find(self, topic: str, after: float = 0.0, **fields) -> tuple[float, dict] | None:
        """First recorded (t, event) with this topic and fields received at or after monotonic `after`."""
        with self._cond:
            for t, event in self.events:
                if t >= after and self._match(event, topic, fields):
                    return t, event
        return None

    def wait_for(self, topic: str, timeout: float = 5.0, after: float = 0.0, **fields) -> tuple[float, dict] | None:
        """Block until a matching event arrives (or is already recorded); None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            index = 0
            while True:
                for t, event in self.events[index:]:
                    if t >= after and self._match(event, topic, fields):
                        return t, event
                index = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
