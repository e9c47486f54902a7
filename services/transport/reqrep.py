"""REQ/REP (with lazy-pirate recovery) and ROUTER/DEALER ZeroMQ transports.

REQ/REP is strictly alternating: send, receive, send, receive. A REQ socket whose reply never
came is stuck in libzmq (it refuses to send again), so a ``RequestTransport`` that times out in
``receive()`` closes its socket without lingering and reopens it on the same endpoints (the
"lazy pirate" pattern); it is usable again at once. ``request()`` adds resends: it is only safe
for idempotent requests, because a late reply to an abandoned attempt may have been processed.

ROUTER/DEALER is asynchronous and multipart. A ROUTER prefixes every inbound message with the
sender's identity frame and routes outbound messages by their first frame; Apiary sets
``ROUTER_MANDATORY`` so sending to an unknown identity raises instead of vanishing.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import TransportError, TransportTimeout, to_bytes
from .zmqcore import ZmqTransport, zmq  # zmqcore raises the 'pip install pyzmq' ImportError

log = logging.getLogger(__name__)


def _send_in_turn(transport: ZmqTransport, payload: bytes, out_of_turn: str) -> None:
    """Send on a REQ or REP socket; sending out of its strict send/receive turn raises TransportError(out_of_turn)."""
    try:
        transport._send(payload)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EFSM:
            transport.errors += 1
            raise TransportError(out_of_turn) from exc
        transport._fail("send", exc)
    transport.sent += 1


class RequestTransport(ZmqTransport):
    """REQ side: send a request, receive its reply; a timed-out receive reopens the socket."""

    kind = "req"
    socket_kind = "req"

    def send(self, payload: bytes) -> None:
        """Send a request; TransportError if the previous reply was not received yet."""
        _send_in_turn(self, payload, "req: receive() the reply before sending the next request")

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the reply, or None on timeout, after which the socket is reopened (lazy pirate)."""
        try:
            reply = super().receive(timeout)
        except TransportError as exc:
            if isinstance(exc.__cause__, zmq.ZMQError) and exc.__cause__.errno == zmq.EFSM:
                raise TransportError("req: send() a request before receiving") from exc
            raise
        if reply is None:
            log.warning("req: no reply within %s s from %s; reopening the socket (lazy pirate)",
                        timeout, [a for _, a in self.endpoints])
            self.reopen()
        return reply

    def request(self, payload: bytes, timeout: float | None = None, retries: int | None = None) -> bytes:
        """Send payload and return the reply, resending up to retries times; TransportTimeout if none came."""
        timeout = self.options.request_timeout_ms / 1000 if timeout is None else timeout
        retries = self.options.request_retries if retries is None else retries
        for attempt in range(retries + 1):
            if attempt:
                self.retries += 1
            self.send(payload)
            reply = self.receive(timeout)
            if reply is not None:
                return reply
        raise TransportTimeout(f"req: no reply from {[a for _, a in self.endpoints]} after "
                               f"{retries + 1} attempts of {timeout} s")


class ReplyTransport(ZmqTransport):
    """REP side: receive a request, send its reply."""

    kind = "rep"
    socket_kind = "rep"

    def send(self, payload: bytes) -> None:
        """Send the reply to the request just received."""
        _send_in_turn(self, payload, "rep: receive() a request before sending a reply")


class RouterTransport(ZmqTransport):
    """ROUTER side: messages carry the peer identity; replies are routed by it."""

    kind = "router"
    socket_kind = "router"

    def __init__(self, options: Any = None) -> None:
        """Create the ROUTER socket (ROUTER_MANDATORY)."""
        self._envelope: list[bytes] | None = None
        super().__init__(options)

    @property
    def last_identity(self) -> bytes | None:
        """Identity of the peer whose message receive() returned last."""
        return self._envelope[0] if self._envelope else None

    def receive_from(self, timeout: float | None = None) -> tuple[bytes, list[bytes]] | None:
        """Return (identity, frames) of the next message, or None on timeout."""
        frames = self.receive_multipart(timeout)
        if frames is None:
            return None
        return frames[0], frames[1:]

    def send_to(self, identity: bytes | str, *frames: bytes) -> None:
        """Send frames to the peer with identity; TransportError if no such peer is connected."""
        try:
            self.send_multipart([to_bytes(identity), *frames])
        except TransportError as exc:
            if isinstance(exc.__cause__, zmq.ZMQError) and exc.__cause__.errno == zmq.EHOSTUNREACH:
                raise TransportError(f"router: no connected peer with identity {identity!r}") from exc
            raise

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the payload (last frame) of the next message and remember its sender for send()."""
        frames = self.receive_multipart(timeout)
        if frames is None:
            return None
        self._envelope = frames[:-1]
        return frames[-1]

    def send(self, payload: bytes) -> None:
        """Reply with payload to the sender of the last received message (keeps a REQ's delimiter)."""
        if not self._envelope:
            raise TransportError("router: send() replies to the last sender and nothing was received; "
                                 "use send_to(identity, payload)")
        self.send_to(self._envelope[0], *self._envelope[1:], payload)


class DealerTransport(ZmqTransport):
    """DEALER side: asynchronous requests to one or many ROUTER/REP peers (round-robin)."""

    kind = "dealer"
    socket_kind = "dealer"

    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the payload (last frame) of the next message, or None on timeout."""
        frames = self.receive_multipart(timeout)
        return None if frames is None else frames[-1]
