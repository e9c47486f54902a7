"""Fault knobs of the mock worker: validation of a fault set and the memory hog behind `oom`."""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from services.protocol_malformed import CATALOGUE

log = logging.getLogger("mock-worker")

MALFORMED_KINDS = tuple(k for k, entry in CATALOGUE.items() if entry.frames)   # what a DEALER can send
OOM_MODES = ("now", "on_load", "on_job")

# field -> (accepted types, human type name)
FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "crash_after_tokens": ((int,), "integer"),
    "exit_code": ((int,), "integer"),
    "hang": ((bool,), "boolean"),
    "tokens_per_s": ((int, float), "number"),
    "oom": ((str,), "string"),
    "oom_limit_mb": ((int, float), "number"),
    "reject": ((str,), "string"),
    "malformed_frame": ((str,), "string"),
    "unhealthy": ((bool,), "boolean"),
    "error": ((str,), "string"),
    # deliberate bug (off by default): after re-registering following a lost hive link, run the last job
    # finished before the loss again and send its FINAL a second time
    "dup_final_after_reconnect": ((bool,), "boolean"),
}


class FaultError(ValueError):
    """A fault set that cannot be applied; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def validate_faults(raw: Any) -> dict:
    """Return a checked copy of a fault set, raising FaultError naming the first bad field."""
    if not isinstance(raw, dict):
        raise FaultError("faults", "faults must be a JSON object")
    faults: dict[str, Any] = {}
    for field, value in raw.items():
        if field not in FIELDS:
            raise FaultError(field, f"unknown fault field '{field}'; allowed: {', '.join(FIELDS)}")
        kinds, name = FIELDS[field]
        if value is None:
            continue
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise FaultError(field, f"fault field '{field}' must be a {name}")
        if field in ("crash_after_tokens", "oom_limit_mb") and value < 0:
            raise FaultError(field, f"fault field '{field}' must be >= 0")
        if field == "tokens_per_s" and value < 0:
            raise FaultError(field, "fault field 'tokens_per_s' must be >= 0")
        if field == "exit_code" and not 0 <= value <= 255:
            raise FaultError(field, "fault field 'exit_code' must be in 0..255")
        if field == "oom" and value not in OOM_MODES:
            raise FaultError(field, f"fault field 'oom' must be one of {', '.join(OOM_MODES)}")
        if field == "malformed_frame" and value not in MALFORMED_KINDS:
            raise FaultError(field, f"fault field 'malformed_frame' must be one of {', '.join(MALFORMED_KINDS)}")
        faults[field] = value
    return faults


async def hog_memory(limit_mb: float | None, chunk_mb: int = 16, pause_s: float = 0.005) -> None:
    """Allocate and touch memory until the kernel kills us, or exit 137 at the optional local cap."""
    held: list[bytes] = []
    total_mb = 0
    log.warning("oom started", extra={"event": "oom_started", "limit_mb": limit_mb})
    while True:
        if limit_mb is not None and total_mb + chunk_mb > limit_mb:
            log.error("oom cap reached", extra={"event": "oom_cap_reached", "allocated_mb": total_mb})
            logging.shutdown()
            os._exit(137)
        held.append(b"\x01" * (chunk_mb << 20))  # bytes * n touches every page
        total_mb += chunk_mb
        await asyncio.sleep(pause_s)
