"""Transport interface, options, statistics and errors shared by every Apiary transport.

A transport moves opaque ``bytes`` payloads. The contract every implementation keeps:

* ``bind(address)`` returns the address actually bound (an OS-chosen TCP port is filled in);
  ``connect(address)`` returns the address it connected to.
* ``send(payload)`` queues one message; it raises :class:`TransportTimeout` if the send timeout
  expires and :class:`TransportClosed` after ``close()``.
* ``receive(timeout)`` returns the next payload, or **None when the timeout expires** (it never
  raises on a timeout). ``timeout`` is in seconds; ``None`` means "use the transport's
  ``receive_timeout_ms`` option" (default -1: wait forever); ``0`` polls without waiting.
  A pipe whose writer has gone away raises :class:`TransportClosed` (end of stream).
* ``close()`` is idempotent; a transport is a context manager that closes on exit.
* ``get_stats()`` returns a fresh dict of counters (see :data:`STAT_KEYS`).

Counters are plain int attributes so the per-message cost stays one integer increment.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

STAT_KEYS = (
    "kind", "closed", "sent", "received", "dropped", "dropped_by_topic",
    "errors", "reconnects", "retries", "reopens",
)


class TransportError(Exception):
    """Base class of every transport failure."""


class TransportTimeout(TransportError, TimeoutError):
    """A send or a request did not complete before its deadline."""


class TransportClosed(TransportError, EOFError):
    """The transport was closed, or a pipe peer closed its end (end of stream)."""


class ConfigError(TransportError, ValueError):
    """A transport configuration key or value is invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class TransportOptions:
    """Socket and behaviour options; every field has a documented default (docs/zeromq.md).

    high_water_mark: messages queued per peer before send blocks or drops (SNDHWM and RCVHWM), 1000;
        0 = unlimited.
    linger_ms: how long close() lets queued messages drain (ZMQ_LINGER), 1000; 0 = discard, -1 = forever.
    send_timeout_ms: blocking send deadline (ZMQ_SNDTIMEO), -1 = wait forever.
    receive_timeout_ms: receive(timeout=None) deadline (ZMQ_RCVTIMEO), -1 = wait forever.
    reconnect_ivl_ms: first reconnect delay (ZMQ_RECONNECT_IVL), 100; -1 = never reconnect.
    reconnect_ivl_max_ms: reconnect backoff ceiling (ZMQ_RECONNECT_IVL_MAX), 1000; 0 = no backoff.
    tcp_keepalive: OS TCP keepalive (ZMQ_TCP_KEEPALIVE), -1 = OS default, 0 = off, 1 = on.
    tcp_keepalive_idle / tcp_keepalive_intvl / tcp_keepalive_cnt: keepalive tuning (seconds,
        seconds, probes), -1 = OS default.
    heartbeat_ivl_ms: ZMTP PING interval (ZMQ_HEARTBEAT_IVL), 0 = off.
    heartbeat_timeout_ms: close the connection if no traffic this long after a PING
        (ZMQ_HEARTBEAT_TIMEOUT), 0 = same as heartbeat_ivl_ms.
    heartbeat_ttl_ms: TTL announced to the peer in our PINGs (ZMQ_HEARTBEAT_TTL), 0 = none.
    max_message_size: largest inbound message in bytes (ZMQ_MAXMSGSIZE; pipes enforce it too),
        -1 = unlimited.
    subscribe_filter: subscriber topic prefix, or a list of prefixes, "" = every topic.
    drop_warning_interval_s: publisher logs at most one HWM-drop warning per topic per interval, 10.0.
    identity: routing id of a DEALER/REQ/ROUTER socket (ZMQ_ROUTING_ID), None = assigned by peer.
    request_timeout_ms: REQ reply deadline used by request(), 2500.
    request_retries: REQ resends after a timeout (lazy pirate) before request() gives up, 3.
    monitor: track connection events (peers, disconnects, reconnects; needed by wait_for_peers), True.
    """

    high_water_mark: int = 1000
    linger_ms: int = 1000
    send_timeout_ms: int = -1
    receive_timeout_ms: int = -1
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 1000
    tcp_keepalive: int = -1
    tcp_keepalive_idle: int = -1
    tcp_keepalive_intvl: int = -1
    tcp_keepalive_cnt: int = -1
    heartbeat_ivl_ms: int = 0
    heartbeat_timeout_ms: int = 0
    heartbeat_ttl_ms: int = 0
    max_message_size: int = -1
    subscribe_filter: Any = ""
    drop_warning_interval_s: float = 10.0
    identity: Any = None
    request_timeout_ms: int = 2500
    request_retries: int = 3
    monitor: bool = True

    def __post_init__(self) -> None:
        """Reject values of the wrong type or out of range, naming the option."""
        for name, low in _INT_MINIMUMS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"option {name!r} must be an integer, got {value!r}")
            if value < low:
                raise ConfigError(f"option {name!r} must be >= {low}, got {value}")
        if self.tcp_keepalive not in (-1, 0, 1):
            raise ConfigError(f"option 'tcp_keepalive' must be one of -1, 0, 1, got {self.tcp_keepalive}")
        if not isinstance(self.drop_warning_interval_s, (int, float)) or self.drop_warning_interval_s < 0:
            raise ConfigError("option 'drop_warning_interval_s' must be a number >= 0, "
                              f"got {self.drop_warning_interval_s!r}")
        if not isinstance(self.monitor, bool):
            raise ConfigError(f"option 'monitor' must be true or false, got {self.monitor!r}")
        topics = self.subscribe_filter
        items = topics if isinstance(topics, (list, tuple)) else [topics]
        if not all(isinstance(t, (str, bytes)) for t in items):
            raise ConfigError(f"option 'subscribe_filter' must be a string or a list of strings, got {topics!r}")
        if self.identity is not None and not isinstance(self.identity, (str, bytes)):
            raise ConfigError(f"option 'identity' must be a string, got {self.identity!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, where: str = "zeromq") -> "TransportOptions":
        """Build options from a config mapping; an unknown key raises ConfigError naming it."""
        mapping = dict(mapping or {})
        allowed = option_names()
        for key in mapping:
            if key not in allowed:
                raise ConfigError(f"unknown key {where}.{key!r}; allowed: {', '.join(allowed)}")
        return cls(**mapping)

    def replace(self, **changes: Any) -> "TransportOptions":
        """Return a copy with some options changed."""
        return dataclasses.replace(self, **changes)

    def topic_filters(self) -> list[bytes]:
        """Return subscribe_filter as a list of byte prefixes."""
        topics = self.subscribe_filter
        items = topics if isinstance(topics, (list, tuple)) else [topics]
        return [t.encode() if isinstance(t, str) else bytes(t) for t in items]


_INT_MINIMUMS = {
    "high_water_mark": 0, "linger_ms": -1, "send_timeout_ms": -1, "receive_timeout_ms": -1,
    "reconnect_ivl_ms": -1, "reconnect_ivl_max_ms": 0, "tcp_keepalive": -1,
    "tcp_keepalive_idle": -1, "tcp_keepalive_intvl": -1, "tcp_keepalive_cnt": -1,
    "heartbeat_ivl_ms": 0, "heartbeat_timeout_ms": 0, "heartbeat_ttl_ms": 0,
    "max_message_size": -1, "request_timeout_ms": 1, "request_retries": 0,
}


def option_names() -> list[str]:
    """Return the names of every TransportOptions field."""
    return [f.name for f in dataclasses.fields(TransportOptions)]


def to_bytes(value: str | bytes) -> bytes:
    """Return value as bytes (str is UTF-8 encoded)."""
    return value.encode() if isinstance(value, str) else value


def timeout_ms(timeout: float | None, default_ms: int) -> int:
    """Convert a receive timeout in seconds (None = default_ms) to milliseconds, -1 = forever."""
    if timeout is None:
        return default_ms
    if timeout < 0:
        return -1
    return int(timeout * 1000)


class Transport(abc.ABC):
    """Common interface of every transport; see the module docstring for the contract."""

    kind = "transport"

    def __init__(self, options: TransportOptions | None = None) -> None:
        """Initialise counters and options."""
        self.options = options or TransportOptions()
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.dropped_by_topic: dict[str, int] = {}
        self.errors = 0
        self.reconnects = 0
        self.retries = 0
        self.reopens = 0
        self._closed = False

    @abc.abstractmethod
    def bind(self, address: str) -> str:
        """Bind to address and return the address actually bound."""

    @abc.abstractmethod
    def connect(self, address: str) -> str:
        """Connect to address and return it."""

    @abc.abstractmethod
    def send(self, payload: bytes) -> None:
        """Send one message."""

    @abc.abstractmethod
    def receive(self, timeout: float | None = None) -> bytes | None:
        """Return the next message, or None when timeout (seconds) expires."""

    @abc.abstractmethod
    def close(self, linger_ms: int | None = None) -> None:
        """Release the transport; idempotent."""

    def send_many(self, payloads: Iterable[bytes]) -> int:
        """Send every payload in order and return how many were sent."""
        send = self.send
        count = 0
        for payload in payloads:
            send(payload)
            count += 1
        return count

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    def get_stats(self) -> dict[str, Any]:
        """Return a snapshot of the counters."""
        return {
            "kind": self.kind, "closed": self._closed, "sent": self.sent,
            "received": self.received, "dropped": self.dropped,
            "dropped_by_topic": dict(self.dropped_by_topic), "errors": self.errors,
            "reconnects": self.reconnects, "retries": self.retries, "reopens": self.reopens,
            **self._extra_stats(),
        }

    def _extra_stats(self) -> dict[str, Any]:
        """Return transport-specific counters merged into get_stats()."""
        return {}

    def __enter__(self) -> "Transport":
        """Return self."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close on leaving the with-block."""
        self.close()

    def __repr__(self) -> str:
        """Show kind and state."""
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.kind} {state}>"
