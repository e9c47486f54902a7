"""Hive settings, read once from the environment (names and defaults: docs/configuration.md)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from services.common.config import env_float, env_int, env_str, hostname
from services.common.heartbeat import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS
from services.curve import CurveKeys, keys_from_env


@dataclasses.dataclass
class HiveConfig:
    """Everything the hive needs to start."""

    hive_id: str = "hive"
    orchestrator_addr: str = "tcp://127.0.0.1:5555"
    worker_bind: str = "tcp://*:5556"
    model_cache: str = "./data/models"
    download_bytes_per_s: int = 20_000_000
    model_size_bytes: int = 4_000_000
    http_host: str = "0.0.0.0"
    http_port: int = 9200
    interval_s: float = HEARTBEAT_INTERVAL_S
    liveness: int = HEARTBEAT_LIVENESS
    grace_s: float = 5.0
    log_level: str = "info"
    download_attempts: int = 3
    curve: Optional[CurveKeys] = None  # from_env: on unless APIARY_CURVE=off; built directly: off

    @classmethod
    def from_env(cls) -> "HiveConfig":
        """Build the config from APIARY_* variables, exiting with a clear message on a bad value."""
        return cls(
            hive_id=env_str("APIARY_HIVE_ID", hostname()),
            orchestrator_addr=env_str("APIARY_ORCHESTRATOR_ADDR", "tcp://127.0.0.1:5555"),
            worker_bind=env_str("APIARY_WORKER_BIND", "tcp://*:5556"),
            model_cache=env_str("APIARY_MODEL_CACHE", "./data/models"),
            download_bytes_per_s=env_int("APIARY_DOWNLOAD_BYTES_PER_S", 20_000_000, minimum=1),
            model_size_bytes=env_int("APIARY_MODEL_SIZE_BYTES", 4_000_000, minimum=0),
            http_host=env_str("APIARY_HTTP_HOST", "0.0.0.0"),
            http_port=env_int("APIARY_HTTP_PORT", 9200, minimum=0),
            interval_s=env_float("APIARY_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S, minimum=0.001),
            liveness=env_int("APIARY_HEARTBEAT_LIVENESS", HEARTBEAT_LIVENESS, minimum=1),
            grace_s=env_float("APIARY_SHUTDOWN_GRACE_S", 5.0, minimum=0),
            log_level=env_str("APIARY_LOG_LEVEL", "info"),
            curve=keys_from_env("hive"),
        )
