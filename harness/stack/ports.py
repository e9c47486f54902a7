"""Free TCP ports on 127.0.0.1 for published ports and local listeners: the kit's one home for them (the services'
own launcher, services/stack.py, keeps its one-liner: services never import the harness)."""
from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on 127.0.0.1 right now (the OS picks them, all bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One TCP port free on 127.0.0.1 right now."""
    return free_ports(1)[0]
