"""Apiary transport layer: one interface over ZeroMQ (PUB/SUB, PUSH/PULL, REQ/REP, ROUTER/DEALER) and Unix pipes.

Import what you need from here::

    from services.transport import PushTransport, PullTransport, TransportOptions, TransportFactory

The ZeroMQ names are imported lazily so the pipe transport works without pyzmq; using one of
them without pyzmq installed raises ImportError("... pip install pyzmq"). See docs/zeromq.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from .addresses import PROTOCOLS, check_address, is_windows, local_address, protocol_of
from .base import (
    ConfigError,
    Transport,
    TransportClosed,
    TransportError,
    TransportOptions,
    TransportTimeout,
    option_names,
)
from .factory import TransportFactory, TransportSpec
from .pipe import PipeTransport

_LAZY = {
    "context": "zmqcore", "async_context": "zmqcore", "make_socket": "zmqcore",
    "apply_options": "zmqcore", "ZmqTransport": "zmqcore",
    "PublisherTransport": "zeromq", "SubscriberTransport": "zeromq",
    "PushTransport": "zeromq", "PullTransport": "zeromq",
    "RequestTransport": "reqrep", "ReplyTransport": "reqrep",
    "RouterTransport": "reqrep", "DealerTransport": "reqrep",
}

__all__ = [
    "PROTOCOLS", "ConfigError", "PipeTransport", "Transport", "TransportClosed", "TransportError",
    "TransportFactory", "TransportOptions", "TransportSpec", "TransportTimeout", "check_address",
    "is_windows", "local_address", "option_names", "protocol_of", *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import ZeroMQ-backed names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
