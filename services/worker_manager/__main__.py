"""Run a hive (worker-manager): `python -m services.worker_manager` (config from APIARY_* env vars)."""
from __future__ import annotations

import sys

from services.common.logs import setup_logging
from services.common.serve import quiet_uvicorn, run_loop, serve_until_stopped

from .config import HiveConfig
from .hive import Hive
from .http import make_app


def main() -> None:
    """Entry point: run the hive and its HTTP server until shut down."""
    cfg = HiveConfig.from_env()
    setup_logging("worker-manager", cfg.log_level)
    quiet_uvicorn()

    async def serve() -> int:
        hive = Hive(cfg)
        return await serve_until_stopped(hive, make_app(hive), cfg.http_host, cfg.http_port)
    sys.exit(run_loop(serve()))


if __name__ == "__main__":
    main()
