"""Prometheus metrics of the orchestrator in their own CollectorRegistry (cheap pre-bound children)."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _StateCollector:
    """Gauges computed at scrape time from the live tables (no per-job gauge updates)."""

    def __init__(self, snapshot: Callable[[], dict]):
        self._snapshot = snapshot

    def collect(self):
        snap = self._snapshot()
        yield GaugeMetricFamily("apiary_queue_depth", "Jobs waiting for a worker", value=snap["queue_depth"])
        yield GaugeMetricFamily("apiary_jobs_inflight", "Jobs dispatched to a worker", value=snap["inflight"])
        yield GaugeMetricFamily("apiary_admission_limit", "Jobs admitted at once (queued + in flight) before 429",
                                value=snap["admission_limit"])
        for name, key, doc in (("apiary_workers", "workers", "Workers by state"),
                               ("apiary_hives", "hives", "Hives by state")):
            family = GaugeMetricFamily(name, doc, labels=["state"])
            for state, count in sorted(snap[key].items()):
                family.add_metric([state], count)
            yield family


class Metrics:
    """All orchestrator metrics; counters are cached per label set so a hot-path inc is one call."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_total = Counter("apiary_jobs_total", "Finished jobs by outcome", ["outcome"], registry=r)
        self.job_latency = Histogram("apiary_job_latency_seconds", "Accept to end of job", buckets=LATENCY_BUCKETS,
                                     registry=r)
        self.ttft = Histogram("apiary_time_to_first_token_seconds", "Accept to first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.protocol_errors = Counter("apiary_protocol_errors_total", "Rejected frames by reason", ["reason"],
                                       registry=r)
        self.dropped_messages = Counter("apiary_dropped_messages_total", "Dropped messages by reason", ["reason"],
                                        registry=r)
        self.redispatches = Counter("apiary_redispatches_total", "Jobs re-dispatched after a loss", registry=r)
        self.slot_waits = Counter("apiary_slot_waits_total", "Jobs queued again because the worker had no free "
                                  "slot after all (no attempt used)", registry=r)
        self.http_requests = Counter("apiary_http_requests_total", "HTTP requests by route and status",
                                     ["route", "status"], registry=r)
        self.registry_errors = Counter("apiary_registry_errors_total", "SQLite registry failures", registry=r)
        self.registry_dropped_rows = Counter("apiary_registry_dropped_rows_total",
                                             "Registry rows dropped because the write buffer was full while "
                                             "the volume failed", registry=r)
        self.curve_refusals = Counter("apiary_curve_refusals_total", "ZeroMQ peers refused at the CURVE handshake, by link and reason",
                                      ["link", "reason"], registry=r)
        self._children: dict[tuple, object] = {}

    def attach_state(self, snapshot: Callable[[], dict]) -> None:
        """Register the scrape-time gauges."""
        self.registry.register(_StateCollector(snapshot))

    def _child(self, metric, *labels):
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def job_finished(self, outcome: str) -> None:
        """Count a finished job (completed, failed, cancelled, timeout, ...)."""
        self._child(self.jobs_total, outcome).inc()

    def protocol_error(self, reason: str) -> None:
        """Count a rejected frame."""
        self._child(self.protocol_errors, reason).inc()

    def dropped(self, reason: str) -> None:
        """Count a dropped message."""
        self._child(self.dropped_messages, reason).inc()

    def curve_refused(self, link: str, reason: str) -> None:
        """Count one peer refused at the CURVE handshake."""
        self._child(self.curve_refusals, link, reason).inc()

    def http(self, route: str, status: int) -> None:
        """Count one HTTP request under `route`: a route table label or routes.OTHER (only the app calls this)."""
        self._child(self.http_requests, route, str(status)).inc()

    def value(self, name: str, labels: dict | None = None) -> float:
        """Return a sample value (tests and /health use it)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)
