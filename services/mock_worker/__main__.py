"""Run the mock worker: `python -m services.mock_worker` (config from APIARY_* env vars)."""
from __future__ import annotations

import sys

from services.common.logs import setup_logging
from services.common.serve import quiet_uvicorn, run_loop, serve_until_stopped

from .config import WorkerConfig
from .http import make_app
from .worker import Worker


def main() -> None:
    """Entry point: run the worker and its HTTP server until it has drained."""
    cfg = WorkerConfig.from_env()
    log = setup_logging("mock-worker", cfg.log_level)
    quiet_uvicorn()
    log.info("starting", extra={"event": "starting", "worker_id": cfg.worker_id, "hive": cfg.hive_addr,
                                "model": cfg.model, "slots": cfg.slots, "http_port": cfg.http_port})

    async def serve() -> int:
        worker = Worker(cfg)
        return await serve_until_stopped(worker, make_app(worker), cfg.http_host, cfg.http_port)
    sys.exit(run_loop(serve()))


if __name__ == "__main__":
    main()
