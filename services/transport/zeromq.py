"""PUB/SUB and PUSH/PULL ZeroMQ transports.

PUB/SUB: the publisher is an XPUB socket with ``XPUB_NODROP=1``. A send that would exceed a
subscriber's high-water mark raises ``zmq.Again`` instead of being dropped silently; the
publisher then drops the message *on purpose*, counts it per topic, and logs at most one
warning per topic per ``drop_warning_interval_s``. Messages are two frames: ``[topic, payload]``;
subscribers match ``subscribe_filter`` prefixes against the topic frame. A subscriber receives
only what is published after its subscription reached the publisher (late joiners miss earlier
messages; ``wait_for_subscribers`` is the readiness handshake).

PUSH/PULL: every message goes to exactly one puller, round-robin over the pullers that are
connected *when it is sent*; a blocked (full) puller is skipped. Nothing is lost or duplicated.
For an even spread, wait until every puller is connected (``wait_for_peers``) before sending.
"""

from __future__ import annotations

import logging
import time
import types
from typing import Any, Iterable

from .base import TransportError, TransportTimeout, to_bytes
from .zmqcore import ZmqTransport, zmq  # zmqcore raises the 'pip install pyzmq' ImportError

log = logging.getLogger(__name__)

_NOBLOCK = zmq.NOBLOCK
_RCVMORE = zmq.RCVMORE
_MORE_NOBLOCK = zmq.SNDMORE | zmq.NOBLOCK


class PublisherTransport(ZmqTransport):
    """PUB side of PUB/SUB: fan-out of (topic, payload) to every matching subscriber; never blocks."""

    kind = "publisher"
    socket_kind = "xpub"

    def __init__(self, options: Any = None) -> None:
        """Create the XPUB socket (NODROP, VERBOSE) and the per-topic warning clock."""
        self.subscriptions = 0
        self._last_warning: dict[bytes, float] = {}
        super().__init__(options)

    def send(self, payload: bytes, topic: bytes | str = b"") -> bool:
        """Publish payload under topic; return False if dropped because a subscriber is at its HWM."""
        if topic.__class__ is str:
            topic = topic.encode()
        try:
            self._send(topic, _MORE_NOBLOCK)
            self._send(payload, _NOBLOCK)
        except zmq.Again:
            self._count_drop(topic)
            return False
        except zmq.ZMQError as exc:
            self._fail("send", exc)
        self.sent += 1
        return True

    def send_many(self, payloads: Iterable[bytes], topic: bytes | str = b"") -> int:
        """Publish every payload under one topic; return how many were queued (the rest were dropped)."""
        topic = to_bytes(topic)
        send = self.send
        return sum(1 for payload in payloads if send(payload, topic))

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        """Publish [topic, *frames]; a drop at the HWM is counted like send()."""
        try:
            self._socket.send_multipart(frames, flags | _NOBLOCK)
        except zmq.Again:
            self._count_drop(frames[0] if frames else b"")
            return
        except zmq.ZMQError as exc:
            self._fail("send", exc)
        self.sent += 1

    def _count_drop(self, topic: bytes) -> None:
        """Count a dropped message for topic and warn, at most once per topic per interval."""
        self.dropped += 1
        name = topic.decode("utf-8", "replace")
        self.dropped_by_topic[name] = self.dropped_by_topic.get(name, 0) + 1
        now = time.monotonic()
        last = self._last_warning.get(topic)
        if last is None or now - last >= self.options.drop_warning_interval_s:
            self._last_warning[topic] = now
            log.warning("slow subscriber: dropped message on topic %r at the high-water mark (%d); "
                        "%d dropped on this topic so far", name, self.options.high_water_mark,
                        self.dropped_by_topic[name],
                        extra={"topic": name, "dropped": self.dropped_by_topic[name]})

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Publishers do not receive messages."""
        raise TransportError("a publisher cannot receive; use a SubscriberTransport")

    def _drain_subscriptions(self) -> None:
        """Consume subscription messages (XPUB_VERBOSE: one per subscriber per topic)."""
        while True:
            try:
                frame = self._socket.recv(_NOBLOCK)
            except zmq.ZMQError:
                return
            if frame[:1] == b"\x01":
                self.subscriptions += 1
            elif frame[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)

    def wait_for_subscribers(self, count: int, timeout: float) -> int:
        """Block until count subscriptions arrived (any protocol); TransportTimeout after timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain_subscriptions()
            if self.subscriptions >= count:
                return self.subscriptions
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"publisher: only {self.subscriptions} of {count} subscriptions "
                                       f"arrived within {timeout} s on {[a for _, a in self.endpoints]}")
            self._socket.poll(int(left * 1000) + 1, zmq.POLLIN)

    def _extra_stats(self) -> dict[str, Any]:
        """Add the subscription count."""
        if not self._closed:
            self._drain_subscriptions()
        return {**super()._extra_stats(), "subscriptions": self.subscriptions}


class SubscriberTransport(ZmqTransport):
    """SUB side of PUB/SUB: receives the payloads whose topic starts with a subscribed prefix."""

    kind = "subscriber"
    socket_kind = "sub"

    def subscribe(self, prefix: bytes | str) -> None:
        """Add a topic prefix ("" = everything)."""
        self._socket.setsockopt(zmq.SUBSCRIBE, to_bytes(prefix))

    def unsubscribe(self, prefix: bytes | str) -> None:
        """Remove a topic prefix."""
        self._socket.setsockopt(zmq.UNSUBSCRIBE, to_bytes(prefix))

    def _open_socket(self) -> None:
        """Open the socket and bind the RCVMORE getter (Cython, like recv)."""
        super()._open_socket()
        self._getopt = types.MethodType(zmq.backend.Socket.get, self._socket)

    def _read(self, flags: int = 0) -> tuple[bytes, bytes]:
        """Read one [topic, payload] message (all frames of a message arrive together)."""
        recv, more = self._recv, self._getopt
        topic = recv(flags)
        if not more(_RCVMORE):  # single-frame message from a plain PUB: the topic is its prefix
            return topic, topic
        payload = recv()
        while more(_RCVMORE):
            payload = recv()
        return topic, payload

    def receive_with_topic(self, timeout: float | None = None) -> tuple[bytes, bytes] | None:
        """Return (topic, payload), or None when timeout (seconds) expires."""
        try:
            message = self._read() if timeout is None else self._read(_NOBLOCK)
        except zmq.Again:
            if not timeout:
                return None
            message = self._receive_slow(self._read, timeout)
            if message is None:
                return None
        except zmq.ZMQError as exc:
            self._fail("receive", exc)
        self.received += 1
        return message

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the next payload (topic discarded), or None on timeout."""
        message = self.receive_with_topic(timeout)
        return None if message is None else message[1]

    def send(self, payload: bytes) -> None:
        """Subscribers do not send messages."""
        raise TransportError("a subscriber cannot send; use a PublisherTransport")


class PushTransport(ZmqTransport):
    """PUSH side of PUSH/PULL: each message goes to one puller (round-robin); blocks at the HWM."""

    kind = "push"
    socket_kind = "push"

    def send_many(self, payloads: Iterable[bytes]) -> int:
        """Send every payload in order with one Python loop; return how many were sent."""
        send = self._send
        count = 0
        try:
            for payload in payloads:
                send(payload)
                count += 1
        except zmq.Again:
            self.errors += 1
            raise TransportTimeout(f"push: send not queued within {self.options.send_timeout_ms} ms "
                                   f"after {count} messages") from None
        except zmq.ZMQError as exc:
            self._fail("send", exc)
        finally:
            self.sent += count
        return count

    def receive(self, timeout: float | None = None) -> bytes | None:
        """PUSH sockets do not receive messages."""
        raise TransportError("a push transport cannot receive; use a PullTransport")


class PullTransport(ZmqTransport):
    """PULL side of PUSH/PULL: fair-queues messages from every connected pusher."""

    kind = "pull"
    socket_kind = "pull"

    def send(self, payload: bytes) -> None:
        """PULL sockets do not send messages."""
        raise TransportError("a pull transport cannot send; use a PushTransport")

    def receive_many(self, max_count: int, timeout: float | None = None) -> list[bytes]:
        """Return up to max_count messages: waits (up to timeout) for the first, then takes what is queued."""
        first = self.receive(timeout)
        if first is None:
            return []
        batch = [first]
        recv = self._recv
        try:
            while len(batch) < max_count:
                batch.append(recv(_NOBLOCK))
        except zmq.Again:
            pass
        self.received += len(batch) - 1
        return batch
