"""Process lifecycle: SIGTERM/SIGINT handling that works when the service is PID 1 in a container."""
from __future__ import annotations

import asyncio
import signal
from typing import Callable


def install_stop_handlers(loop: asyncio.AbstractEventLoop, on_stop: Callable[[str], None]) -> None:
    """Call on_stop(signal name) on SIGTERM or SIGINT (a PID 1 process ignores them otherwise)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig.name)
