"""`python -m services.orchestrator`: read the env, set up JSON logging, serve HTTP + ZeroMQ until stopped."""
from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn
import uvloop

from services.common.lifecycle import install_stop_handlers
from services.common.logs import setup_logging
from services.common.serve import QuietServer
from .app import build_app
from .config import Settings
from .service import Orchestrator


async def serve(settings: Settings) -> None:
    """Run until a signal or an admin shutdown has drained the jobs."""
    service = Orchestrator(settings)
    app = build_app(service)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, loop="uvloop",
                            http="httptools", lifespan="on", access_log=False, log_config=None,
                            server_header=False, date_header=False, timeout_graceful_shutdown=2,
                            proxy_headers=False,  # nothing reads the client address: skip that ASGI layer
                            backlog=2048, log_level=settings.log_level if settings.log_level != "debug" else "info")
    server = QuietServer(config)

    def exit_now() -> None:
        server.should_exit = True

    service.on_exit = exit_now
    install_stop_handlers(asyncio.get_running_loop(), lambda name: service.request_stop(name))
    await server.serve()
    if not server.started:
        raise SystemExit(3)


def main() -> None:
    settings = Settings.from_env()
    setup_logging("orchestrator", settings.log_level)
    log = logging.getLogger("orchestrator")
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings))
    except SystemExit:
        raise
    except Exception:
        log.exception("orchestrator crashed", extra={"event": "orchestrator.crashed"})
        sys.exit(1)
    log.info("orchestrator exited", extra={"event": "orchestrator.exited"})


if __name__ == "__main__":
    main()
