"""Orchestrator settings read from the APIARY_* environment variables (docs/configuration.md)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from services.common.config import env_float, env_int, env_str
from services.common.heartbeat import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS
from services.curve import CurveKeys, keys_from_env


@dataclasses.dataclass
class Settings:
    """Every knob of the orchestrator, with the documented defaults."""

    log_level: str = "info"
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    heartbeat_liveness: int = HEARTBEAT_LIVENESS
    shutdown_grace_s: float = 5.0
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    router_bind: str = "tcp://*:5555"
    events_bind: str = "tcp://*:5557"
    event_hwm: int = 10000   # events queued per subscriber; a subscriber this far behind misses events (seq gaps)
    event_sndbuf: int = 0    # kernel send buffer per subscriber connection, bytes (0: the OS's, autotuned to MBs)
    db_path: str = "./data/registry.db"
    api_keys: str = "tenant-a:key-a,tenant-b:key-b,admin:key-admin"
    api_keys_file: str = ""
    admin_tenants: str = "admin"
    queue_max: int = 1024
    max_body_bytes: int = 1048576
    request_timeout_s: float = 30.0
    max_attempts: int = 3
    max_tokens_limit: int = 4096
    finished_jobs_max: int = 50000
    curve: Optional[CurveKeys] = None  # from_env: on unless APIARY_CURVE=off; built directly: off

    @property
    def expiry_s(self) -> float:
        """Seconds of silence after which a hive is lost (interval x liveness)."""
        return self.heartbeat_interval_s * self.heartbeat_liveness

    @classmethod
    def from_env(cls) -> "Settings":
        """Read the environment; a bad value exits naming the variable."""
        d = cls()
        return cls(
            log_level=env_str("APIARY_LOG_LEVEL", d.log_level).lower(),
            heartbeat_interval_s=env_float("APIARY_HEARTBEAT_INTERVAL_S", d.heartbeat_interval_s, 0.001),
            heartbeat_liveness=env_int("APIARY_HEARTBEAT_LIVENESS", d.heartbeat_liveness, 1),
            shutdown_grace_s=env_float("APIARY_SHUTDOWN_GRACE_S", d.shutdown_grace_s, 0.0),
            http_host=env_str("APIARY_HTTP_HOST", d.http_host),
            http_port=env_int("APIARY_HTTP_PORT", d.http_port, 0),
            router_bind=env_str("APIARY_ROUTER_BIND", d.router_bind),
            events_bind=env_str("APIARY_EVENTS_BIND", d.events_bind),
            event_hwm=env_int("APIARY_EVENT_HWM", d.event_hwm, 1),
            event_sndbuf=env_int("APIARY_EVENT_SNDBUF", d.event_sndbuf, 0),
            db_path=env_str("APIARY_DB_PATH", d.db_path),
            # a keys file alone replaces the laptop defaults (they stay valid only without one)
            api_keys=env_str("APIARY_API_KEYS", "" if env_str("APIARY_API_KEYS_FILE", "") else d.api_keys),
            api_keys_file=env_str("APIARY_API_KEYS_FILE", d.api_keys_file),
            admin_tenants=env_str("APIARY_ADMIN_TENANTS", d.admin_tenants),
            queue_max=env_int("APIARY_QUEUE_MAX", d.queue_max, 1),
            max_body_bytes=env_int("APIARY_MAX_BODY_BYTES", d.max_body_bytes, 1),
            request_timeout_s=env_float("APIARY_REQUEST_TIMEOUT_S", d.request_timeout_s, 0.001),
            max_attempts=env_int("APIARY_MAX_ATTEMPTS", d.max_attempts, 1),
            max_tokens_limit=env_int("APIARY_MAX_TOKENS_LIMIT", d.max_tokens_limit, 1),
            finished_jobs_max=env_int("APIARY_FINISHED_JOBS_MAX", d.finished_jobs_max, 1),
            curve=keys_from_env("orchestrator"),
        )
