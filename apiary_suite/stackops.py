"""What both backends of the stack share: the topology (services, networks, ports, keys), small
helpers, and StackOps (addresses, health waits, readiness, admin reset, traceback scan)."""
from __future__ import annotations

import concurrent.futures as futures
from pathlib import Path

import requests

from harness.errors import EnvironmentSetupError
from harness.stack import default_topology
from harness.stack.compose import project_name  # noqa: F401 (re-exported)
from harness.stack.health import HealthWaits, answers_health  # noqa: F401 (re-exported)
from harness.stack.reset import send_reset
from harness.stack.ports import free_port  # noqa: F401 (re-exported: the cluster, bench and tests use it from here)
from harness.wait import wait_until
from services import protocol as p

ROOT = Path(__file__).resolve().parents[1]
# The topology comes from the compose file and its x-apiary: block (harness/stack), nowhere else.
TOPOLOGY = default_topology()
SERVICES = TOPOLOGY.names
NETWORKS = {s: TOPOLOGY.networks_of(s) for s in SERVICES}
SHORT_NETWORKS = TOPOLOGY.networks
NET_ADMIN_SERVICES = TOPOLOGY.net_admin_services
ORCHESTRATOR_PORTS = {"http": 8080, "router": 5555, "events": 5557}  # container ports the compose file publishes
API_KEYS = {"tenant-a": "key-a", "tenant-b": "key-b", "admin": "key-admin"}
TRACEBACK = "Traceback (most recent call last)"


def http_port(service: str) -> int:
    """The container HTTP port of a service (its x-apiary health port; an added worker: its role's)."""
    port = TOPOLOGY.health_port(service)
    if port is None:
        raise EnvironmentSetupError("topology", f"{TOPOLOGY.source}: no health port for {service!r}")
    return port


def keys_env(keys: dict[str, str]) -> str:
    """{tenant: key} as the APIARY_API_KEYS value."""
    return ",".join(f"{t}:{k}" for t, k in keys.items())


def make_curve_keys(root: Path) -> Path | None:
    """Make a fresh CURVE key set for one stack under root (None when APIARY_CURVE=off)."""
    return p.make_keyset(root) if p.curve_enabled() else None


class StackOps(HealthWaits):
    """Addresses, health waits and admin operations shared by the docker and local backends (need
    orchestrator_port, http_url, api_keys, services, inspect, probe_health, diagnose, heal)."""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.orchestrator_port('http')}"

    @property
    def events_url(self) -> str:
        return f"tcp://127.0.0.1:{self.orchestrator_port('events')}"

    @property
    def router_url(self) -> str:
        return f"tcp://127.0.0.1:{self.orchestrator_port('router')}"

    curve_root: Path | None = None  # the run's CURVE key set (one directory per role); None: APIARY_CURVE=off

    def client_keys(self):
        """CURVE keys of an authorised client of this stack (probes, subscribers, fuzzers); None when off."""
        return None if self.curve_root is None else p.load_keys(self.curve_root / "client", "client")

    def curve_env(self, role: str) -> dict[str, str]:
        """The CURVE variables of a local service process of a role."""
        if self.curve_root is None:
            return {"APIARY_CURVE": "off"}
        return {"APIARY_CURVE": "on", "APIARY_CURVE_DIR": str(self.curve_root / role)}

    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.api_keys.get('admin', 'key-admin')}"}

    def reset_headers(self) -> dict:
        """The admin key for the declared reset (harness/stack/reset.py)."""
        return self.admin()

    def workers_ready(self) -> dict | None:
        """/v1/workers when both hives and all four workers are ready, else None."""
        body = requests.get(self.api_url + "/v1/workers", headers=self.admin(), timeout=2).json()
        hives = [h for h in body.get("hives", []) if h.get("state") == "ready"]
        workers = [w for w in body.get("workers", []) if w.get("state") == "ready"]
        return body if len(hives) >= 2 and len(workers) >= 4 else None

    def wait_ready(self, timeout_s: float = 20) -> dict:
        """/v1/workers shows 2 hives and 4 workers ready before the deadline."""
        return wait_until(self.workers_ready, timeout_s, 0.05, "2 hives and 4 workers ready in /v1/workers")

    def clear_state(self) -> None:
        """The compose file's x-apiary.reset (the orchestrator's admin reset) and `PUT /faults {}` on every
        hive and worker (a step of HealthWaits.reset)."""
        def put(service: str) -> None:
            requests.put(self.http_url(service) + "/faults", json={}, timeout=2)
        if send_reset(self) is None:
            raise EnvironmentSetupError("reset missing", f"{self.topology.source} declares no x-apiary.reset")
        with futures.ThreadPoolExecutor(6) as pool:
            for f in [pool.submit(put, s) for s in self.services if s != "orchestrator"]:
                f.exception()

    def settle(self, timeout_s: float) -> None:
        """After the reset: both hives and all four workers ready in /v1/workers (HealthWaits.reset)."""
        self.wait_ready(timeout_s)

    def traceback_services(self, since: float) -> dict[str, str]:
        """service -> log excerpt around the first Python traceback logged since a UNIX time."""
        found = {}
        for s in self.services:
            text = self.logs(s, since=since)
            at = text.find(TRACEBACK)
            if at >= 0:
                found[s] = text[max(0, at - 300):at + 2500]
        return found
