"""Serving helpers shared by the three services: uvicorn without its own signal handling, and a run loop."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Coroutine

import uvicorn

from services.common.lifecycle import install_stop_handlers


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT to the service (it drains first, then stops HTTP)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        """Install no signal handlers (the service owns them)."""
        yield


def start_http(app, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task]:
    """Start serving app on host:port in the running loop; return the server and its task."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="off", loop="none", http="auto")
    server = QuietServer(config)
    return server, asyncio.ensure_future(server.serve())


async def stop_http(server: uvicorn.Server, task: asyncio.Task, timeout_s: float = 1.0) -> None:
    """Ask the HTTP server to exit and wait for it briefly."""
    server.should_exit = True
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, timeout_s)


def quiet_uvicorn() -> None:
    """Keep uvicorn's own loggers at warning (JSON formatting comes from setup_logging)."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def serve_until_stopped(service: Any, app, host: str, port: int) -> int:
    """Run `service.run()` with its HTTP app beside it; SIGTERM/SIGINT call `service.request_stop`; return 0."""
    install_stop_handlers(asyncio.get_running_loop(), service.request_stop)
    server, task = start_http(app, host, port)
    await service.run()
    await stop_http(server, task)
    return 0


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run the coroutine on uvloop when installed (asyncio otherwise) and return its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
