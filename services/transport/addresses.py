"""Endpoint addresses: tcp://, ipc:// and inproc://, and the right local address per platform.

* ``tcp://HOST:PORT`` works everywhere; bind ``tcp://*:0``, ``tcp://*:*`` or ``tcp://127.0.0.1:*``
  to let the OS pick a port (``bind()`` reports the port back).
* ``ipc://PATH`` is a Unix domain socket: Linux and macOS only (libzmq has no ipc on Windows).
* ``inproc://NAME`` connects threads of one process through one shared ZeroMQ context.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

PROTOCOLS = ("tcp", "ipc", "inproc")
IPC_PATH_MAX = 107  # sun_path limit on Linux (104 on macOS; checked again by libzmq)

WINDOWS_IPC_MESSAGE = (
    "ipc:// is not available on Windows (libzmq has no Unix domain sockets there); "
    "use tcp://127.0.0.1:PORT for cross-process traffic or inproc:// inside one process"
)


def is_windows(platform: str | None = None) -> bool:
    """True if platform (default: this interpreter's sys.platform) is Windows."""
    return (platform or sys.platform).startswith(("win", "cygwin"))


def protocol_of(address: str) -> str:
    """Return the scheme of address (tcp, ipc or inproc) or raise ValueError."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in PROTOCOLS or not rest:
        raise ValueError(f"bad address {address!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    return scheme


def check_address(address: str, *, bind: bool, platform: str | None = None) -> str:
    """Validate address for bind or connect and return it; raise ValueError saying what is wrong."""
    scheme = protocol_of(address)
    rest = address.split("://", 1)[1]
    if scheme == "ipc" and is_windows(platform):
        raise ValueError(WINDOWS_IPC_MESSAGE)
    if scheme == "tcp":
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port:
            raise ValueError(f"bad address {address!r}: tcp needs HOST:PORT, e.g. tcp://127.0.0.1:5555")
        if not bind and (host == "*" or port in ("*", "0")):
            raise ValueError(f"cannot connect to {address!r}: a wildcard host or port is only valid for bind")
        if port not in ("*", "0") and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"bad address {address!r}: port must be 1-65535, 0 or *")
    if scheme == "ipc" and len(rest) > IPC_PATH_MAX:
        raise ValueError(f"ipc path too long ({len(rest)} > {IPC_PATH_MAX} bytes): {rest!r}")
    return address


def ipc_directory() -> str:
    """Return (creating it, mode 0700) the per-user directory Apiary puts ipc sockets in."""
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    path = os.path.join(tempfile.gettempdir(), f"apiary-{user}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def local_address(protocol: str, name: str, *, directory: str | None = None,
                  platform: str | None = None) -> str:
    """Return a local address for protocol: tcp on 127.0.0.1 with an OS port, ipc under a temp dir, inproc."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "endpoint"
    if protocol == "tcp":
        return "tcp://127.0.0.1:*"
    if protocol == "inproc":
        return f"inproc://apiary-{safe}"
    if protocol == "ipc":
        if is_windows(platform):
            raise ValueError(WINDOWS_IPC_MESSAGE)
        address = f"ipc://{os.path.join(directory or ipc_directory(), safe + '.sock')}"
        return check_address(address, bind=True, platform=platform)
    raise ValueError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
