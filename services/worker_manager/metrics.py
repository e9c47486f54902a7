"""Prometheus metrics of the hive, in their own registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from services.protocol import WORKER_STATES


class HiveMetrics:
    """Workers by state, protocol errors, dropped frames, jobs forwarded, downloads and bytes."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.workers = Gauge("apiary_hive_workers", "Registered workers by state", ["state"], registry=r)
        self.protocol_errors = Counter("apiary_protocol_errors_total", "Malformed frames received",
                                       ["reason"], registry=r)
        self._dropped = Counter("apiary_dropped_messages_total", "Frames dropped", ["reason"], registry=r)
        self.jobs_forwarded = Counter("apiary_hive_jobs_forwarded_total", "REQUESTs forwarded to workers",
                                      registry=r)
        self.downloads = Counter("apiary_hive_downloads_total", "Model downloads by outcome", ["outcome"],
                                 registry=r)
        self.bytes_downloaded = Counter("apiary_hive_bytes_downloaded_total", "Bytes downloaded", registry=r)
        self.curve_refusals = Counter("apiary_curve_refusals_total", "ZeroMQ peers refused at the CURVE handshake, by link and reason",
                                      ["link", "reason"], registry=r)
        self._children: dict[str, Counter] = {}

    def dropped(self, reason: str) -> Counter:
        """Return the dropped-frames counter child for a reason (cached)."""
        child = self._children.get(reason)
        if child is None:
            child = self._children[reason] = self._dropped.labels(reason)
        return child

    def curve_refused(self, link: str, reason: str) -> None:
        """Count one peer refused at the CURVE handshake."""
        self.curve_refusals.labels(link, reason).inc()

    def render(self, states: dict[str, int]) -> bytes:
        """Return the Prometheus text, with the worker gauge set from `states`."""
        for state in WORKER_STATES:
            self.workers.labels(state).set(states.get(state, 0))
        return generate_latest(self.registry)
