"""The orchestrator process state: sockets, registry, cluster, scheduler, and the start/stop/shutdown sequence."""
from __future__ import annotations

import asyncio
import logging
import time

import zmq

from services.curve import secure_server
from services.transport.zap import Gatekeeper

from .auth import Authenticator
from .cluster import Cluster
from .config import Settings
from .events import EventPublisher
from .metrics import Metrics
from .registry import Registry
from .scheduler import Scheduler

log = logging.getLogger("orchestrator")


class Orchestrator:
    """Everything one orchestrator process owns; the HTTP app reads and drives it."""

    def __init__(self, settings: Settings, auth: Authenticator | None = None):
        self.settings = settings
        self.auth = auth or Authenticator.from_settings(settings)
        self.metrics = Metrics()
        self.registry = Registry(settings.db_path, self.metrics)
        self.events = EventPublisher(None, self.metrics)
        self.cluster = Cluster(settings, self.metrics, self.events, self.registry, None)
        self.scheduler = Scheduler(settings, self.metrics, self.events, self.registry, self.cluster)
        self.cluster.scheduler = self.scheduler
        self.metrics.attach_state(self.snapshot)
        self.ctx: zmq.Context | None = None
        self.gate: Gatekeeper | None = None
        self.tasks: list[asyncio.Task] = []
        self.stopping = False
        self.on_exit = None  # set by __main__: stops the HTTP server
        self.router_endpoint = self.events_endpoint = None
        self.started = time.time()

    def snapshot(self) -> dict:
        workers, hives = self.cluster.counts()
        return {"queue_depth": self.scheduler.n_queued, "inflight": self.scheduler.inflight, "workers": workers,
                "hives": hives, "admission_limit": self.scheduler.settings.queue_max}

    async def start(self) -> None:
        """Open the registry, bind the ROUTER and PUB sockets and start the background tasks."""
        loop = asyncio.get_running_loop()
        self.scheduler.loop = loop
        state = self.registry.open()
        self.cluster.load(state)
        self.ctx = zmq.Context()
        keys = self.settings.curve
        if keys is not None:  # the ZAP handler binds first: no CURVE peer is ever judged by nobody
            self.gate = Gatekeeper(self.ctx, keys, self.metrics.curve_refused).start()
        router = self.ctx.socket(zmq.ROUTER)
        for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 100000), (zmq.RCVHWM, 100000),
                              (zmq.ROUTER_MANDATORY, 1), (zmq.ROUTER_HANDOVER, 1)):
            router.setsockopt(option, value)
        if keys is not None:
            secure_server(router, keys, "router")
        router.bind(self.settings.router_bind)
        self.router_endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        pub = self.ctx.socket(zmq.XPUB)  # subscriptions tell the publisher which events are wanted
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, self.settings.event_hwm)   # lossy per subscriber: a slow one misses events
        if self.settings.event_sndbuf:   # bound the kernel's share too, or a slow subscriber's backlog is MBs more
            pub.setsockopt(zmq.SNDBUF, self.settings.event_sndbuf)
        if keys is not None:
            secure_server(pub, keys, "events")
        pub.bind(self.settings.events_bind)
        if self.gate is not None:
            self.gate.watch(router, "router")
            self.gate.watch(pub, "events")
        self.events_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.cluster.attach(router)
        self.events.attach(pub)
        self.tasks = [loop.create_task(self.cluster.run_heartbeats(), name="heartbeats")]
        log.info("orchestrator started", extra={
            "event": "orchestrator.started", "router": self.router_endpoint, "events": self.events_endpoint,
            "db_path": self.settings.db_path, "registry_error": self.registry.error,
            "jobs_failed_on_restart": state["restarted_jobs"], "hives_loaded": len(state["hives"]),
            "workers_loaded": len(state["workers"]), "curve": keys is not None})

    async def stop(self) -> None:
        """Cancel tasks, flush the registry, close sockets."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.tasks = []
        await asyncio.to_thread(self.registry.close)
        if self.cluster.socket is not None:
            self.cluster.socket.close(linger=0)
            self.cluster.socket = None
        self.events.close()
        if self.gate is not None:
            self.gate.stop()
            self.gate = None
        if self.ctx is not None:
            self.ctx.destroy(linger=0)
            self.ctx = None
        log.info("orchestrator stopped", extra={"event": "orchestrator.stopped"})

    def request_stop(self, why: str, cascade: bool = False) -> None:
        """Begin a graceful stop (SIGTERM: drain; admin shutdown: also cascade SHUTDOWN to the hives)."""
        if self.stopping:
            return
        self.stopping = True
        self.scheduler.admitting = False
        log.info("shutdown requested", extra={"event": "orchestrator.stopping", "reason": why, "cascade": cascade,
                                              "active_jobs": self.scheduler.active})
        asyncio.get_running_loop().create_task(self._drain(cascade))

    async def _drain(self, cascade: bool) -> None:
        loop = asyncio.get_running_loop()
        grace = self.settings.shutdown_grace_s
        if cascade:
            self.events.publish("cluster.shutdown", grace_s=grace)
            self.cluster.shutdown_hives(grace)
        deadline = loop.time() + grace + (1.0 if cascade else 0.0)
        while loop.time() < deadline:
            jobs_done = self.scheduler.active == 0
            if jobs_done and (not cascade or self.cluster.hives_gone.is_set()):
                break
            await asyncio.sleep(0.02)
        failed = self.scheduler.fail_all("shutting_down", "the orchestrator shut down before the job finished")
        log.info("drained", extra={"event": "orchestrator.drained", "failed_jobs": failed})
        await asyncio.sleep(0.05)  # let the waiting handlers write their answers
        if self.on_exit is not None:
            self.on_exit()
