"""Prometheus metrics of the mock worker, in their own registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class WorkerMetrics:
    """Tokens generated, jobs by outcome, faults applied, protocol errors, dropped frames, ledger errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tokens = Counter("apiary_worker_tokens_total", "Tokens generated and relayed", registry=r)
        self._jobs = Counter("apiary_worker_jobs_total", "Jobs by outcome", ["outcome"], registry=r)
        self.faults_applied = Counter("apiary_worker_faults_applied_total", "Fault knobs applied",
                                      ["fault"], registry=r)
        self.protocol_errors = Counter("apiary_protocol_errors_total", "Malformed frames received",
                                       ["reason"], registry=r)
        self.dropped = Counter("apiary_dropped_messages_total", "Frames that could not be sent", registry=r)
        self.ledger_errors = Counter("apiary_worker_ledger_errors_total", "Ledger lines that could not be written",
                                     registry=r)
        self.in_flight = Gauge("apiary_worker_jobs_in_flight", "Jobs running now", registry=r)
        self._children: dict[str, Counter] = {}

    def jobs(self, outcome: str) -> Counter:
        """Return the jobs counter child for an outcome (cached)."""
        child = self._children.get(outcome)
        if child is None:
            child = self._children[outcome] = self._jobs.labels(outcome)
        return child

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)
