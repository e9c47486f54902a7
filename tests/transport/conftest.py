"""Fixtures for the transport tests: transports that are always closed, short ipc paths, addresses."""

from __future__ import annotations

import shutil
import tempfile
import threading
from typing import Callable

import pytest

from services.transport import Transport, TransportOptions, local_address


@pytest.fixture
def opts() -> TransportOptions:
    """Options for tests: never linger on close, generous deadlines left to each test."""
    return TransportOptions(linger_ms=0)


@pytest.fixture
def make() -> Callable:
    """Return make(cls, options=None) that builds a transport and closes it (linger 0) after the test."""
    made: list[Transport] = []

    def build(cls, options: TransportOptions | None = None, **kwargs):
        transport = cls(options or TransportOptions(linger_ms=0), **kwargs)
        made.append(transport)
        return transport

    yield build
    for transport in made:
        transport.close(0)


@pytest.fixture
def ipc_dir():
    """A short temporary directory for ipc sockets (sun_path is limited to ~107 bytes), removed after."""
    path = tempfile.mkdtemp(prefix="apiary-t-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def address(ipc_dir) -> Callable[[str, str], str]:
    """Return address(protocol, name): a bindable local address (tcp uses an OS-chosen port)."""
    return lambda protocol, name: local_address(protocol, name, directory=ipc_dir)


@pytest.fixture
def threads():
    """Start daemon threads with start(fn, *args); join them (bounded) after the test."""
    started: list[threading.Thread] = []

    def start(fn, *args) -> threading.Thread:
        thread = threading.Thread(target=fn, args=args, daemon=True)
        thread.start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.join(10)
        assert not thread.is_alive(), f"helper thread {thread.name} did not finish within 10 s"
