"""Cluster events on the orchestrator's PUB socket (topics from services.protocol.EVENT_TOPICS).

The socket is an XPUB driven by the loop (services.transport.loop.LoopSocket): subscribers see the
same [topic, body] frames as from a PUB, and the publisher learns which topic prefixes anybody
subscribed to, so an event nobody listens to is not encoded at all (its sequence number is still
consumed: every subscriber sees events in order, numbered per process).  Subscriptions are read as soon as
the loop sees them; as with a PUB, a subscriber must let its subscription arrive (a few ms after the
handshake) before the events it wants are published.
"""
from __future__ import annotations

import logging

import zmq

from services.transport.loop import LoopSocket
from services.protocol import encode_event

log = logging.getLogger("orchestrator.events")


class EventPublisher:
    """Publish [topic, body] events with a per-process sequence number; never blocks the loop."""

    def __init__(self, socket: LoopSocket | None, metrics=None):
        self.socket = socket
        self.seq = 0
        self.metrics = metrics
        self.prefixes: set[bytes] = set()  # subscribed topic prefixes (XPUB: first subscribe / last unsubscribe)
        self._wanted: dict[str, bool] = {}  # topic -> anybody subscribed (cleared on every subscription change)

    def attach(self, sock: zmq.Socket) -> LoopSocket:
        """Drive a bound XPUB (or PUB) socket from the running loop; subscriptions are read as they arrive."""
        self.socket = LoopSocket(sock, self.on_subscription, name="events")
        if sock.getsockopt(zmq.TYPE) != zmq.XPUB:  # a plain PUB: no subscription messages, send everything
            self.prefixes.add(b"")
        return self.socket

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def on_subscription(self, frames: list) -> None:
        """An XPUB subscription message: b'\\x01' + prefix subscribes, b'\\x00' + prefix unsubscribes."""
        msg = frames[0]
        if not msg or len(frames) != 1:
            return
        if msg[0] == 1:
            self.prefixes.add(msg[1:])
        elif msg[0] == 0:
            self.prefixes.discard(msg[1:])
        self._wanted.clear()

    def wanted(self, topic: str) -> bool:
        """Return True when some subscriber's prefix matches the topic."""
        known = self._wanted.get(topic)
        if known is None:
            raw = topic.encode()
            known = self._wanted[topic] = any(raw.startswith(prefix) for prefix in self.prefixes)
        return known

    def publish(self, topic: str, **fields) -> None:
        """Send one event to its subscribers; a full queue drops it (counted) instead of waiting."""
        self.seq += 1
        sock = self.socket
        if sock is None:
            return
        if not (self.prefixes and self.wanted(topic)):
            return
        if not sock.send(encode_event(topic, self.seq, fields)):
            if self.metrics is not None:
                self.metrics.dropped("event_hwm")
