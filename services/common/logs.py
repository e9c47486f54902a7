"""JSON-lines logging shared by the services: one object per line with service, event, job_id, trace_id."""
from __future__ import annotations

import logging
import sys
import time

from services.protocol import dumps

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object; extra fields (job_id, trace_id, ...) are kept."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line."""
        entry = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        if getattr(record, "event", None):
            entry["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in entry and key != "event":
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return dumps(entry).decode()


def setup_logging(service: str, level: str = "info") -> logging.Logger:
    """Send every log record of this process to stderr as JSON lines and return the service logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").handlers[:] = []
    logging.getLogger("uvicorn").handlers[:] = []
    return logging.getLogger(service)


class OncePerPeer:
    """Remember which (peer, reason) pairs were already logged so a noisy peer logs once."""

    def __init__(self, limit: int = 10000):
        self._seen: dict[tuple[str, str], float] = {}
        self._limit = limit

    def first(self, peer: str, reason: str) -> bool:
        """Return True the first time (peer, reason) is seen."""
        key = (peer, reason)
        if key in self._seen:
            return False
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen[key] = time.monotonic()
        return True
