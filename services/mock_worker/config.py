"""Mock worker settings, read once from the environment (names and defaults: docs/configuration.md)."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from services.common.config import ConfigError, env_float, env_int, env_str, hostname
from services.common.heartbeat import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS
from services.curve import CurveKeys, keys_from_env
from services.protocol import loads

from .faults import FaultError, validate_faults
from .ledger import default_path


@dataclasses.dataclass
class WorkerConfig:
    """Everything the worker needs to start."""

    worker_id: str = "worker"
    hive_addr: str = "tcp://127.0.0.1:5556"
    model: str = "tinyllama"
    slots: int = 4
    tokens_per_s: float = 200.0
    load_time_s: float = 0.1
    http_host: str = "0.0.0.0"
    http_port: int = 8001
    interval_s: float = HEARTBEAT_INTERVAL_S
    liveness: int = HEARTBEAT_LIVENESS
    grace_s: float = 5.0
    log_level: str = "info"
    faults: dict = dataclasses.field(default_factory=dict)
    ledger_path: str = ""  # "" = default_path(worker_id)
    curve: Optional[CurveKeys] = None  # from_env: on unless APIARY_CURVE=off; built directly: off

    @classmethod
    def from_env(cls) -> "WorkerConfig":
        """Build the config from APIARY_* variables, exiting with a clear message on a bad value."""
        worker_id = env_str("APIARY_WORKER_ID", hostname())
        return cls(
            worker_id=worker_id,
            hive_addr=env_str("APIARY_HIVE_ADDR", "tcp://127.0.0.1:5556"),
            model=env_str("APIARY_MODEL", "tinyllama"),
            slots=env_int("APIARY_SLOTS", 4, minimum=1),
            tokens_per_s=env_float("APIARY_TOKENS_PER_S", 200.0, minimum=0),
            load_time_s=env_float("APIARY_LOAD_TIME_S", 0.1, minimum=0),
            http_host=env_str("APIARY_HTTP_HOST", "0.0.0.0"),
            http_port=env_int("APIARY_HTTP_PORT", 8001, minimum=0),
            interval_s=env_float("APIARY_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S, minimum=0.001),
            liveness=env_int("APIARY_HEARTBEAT_LIVENESS", HEARTBEAT_LIVENESS, minimum=1),
            grace_s=env_float("APIARY_SHUTDOWN_GRACE_S", 5.0, minimum=0),
            log_level=env_str("APIARY_LOG_LEVEL", "info"),
            faults=faults_from_env(),
            ledger_path=env_str("APIARY_LEDGER_PATH", default_path(worker_id)),
            curve=keys_from_env("worker"),
        )


def faults_from_env() -> dict:
    """Parse APIARY_FAULTS (JSON, same shape as PUT /faults)."""
    raw = os.environ.get("APIARY_FAULTS", "").strip()
    if not raw:
        return {}
    try:
        return validate_faults(loads(raw))
    except ValueError as exc:
        field = exc.field if isinstance(exc, FaultError) else "json"
        raise ConfigError(f"config error: APIARY_FAULTS ({field}): {exc}") from None
