"""The harness's `--backend local`: the compose file's stack as local processes on 127.0.0.1 (no Docker engine),
same service names. The processes (ports, keys, env, signals, leftovers) are services.stack.LocalStack's, the
one local launcher; this adapter gives it the harness's Stack shape (inspect like docker's, health waits,
restart counts) and refuses network faults, which need docker."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentSetupError, NemesisError
from apiary_suite.stackops import API_KEYS, SERVICES, TOPOLOGY, StackOps, answers_health, project_name
from services.stack import LocalStack, kill_leftovers  # noqa: F401 (kill_leftovers: the runner's safety net)

NEEDS_DOCKER = "needs the docker backend (container networks); run with --backend docker"


def now_iso() -> str:
    """Current UTC time in the format `docker inspect` uses for StartedAt/FinishedAt."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def launcher_for(workdir: Path, api_keys: dict[str, str]) -> LocalStack:
    """A LocalStack with the topology's hives and workers (EnvironmentSetupError when the names differ)."""
    roles = [TOPOLOGY.role(s) for s in SERVICES]
    hives, workers = roles.count("hive"), roles.count("worker")
    launcher = LocalStack(hives=max(hives, 1), workers_per_hive=max(workers // max(hives, 1), 1), workdir=workdir,
                          keys=api_keys, orchestrator_env={"APIARY_QUEUE_MAX": os.environ.get("APIARY_QUEUE_MAX", "128")})
    if sorted(launcher.names) != sorted(SERVICES):
        raise EnvironmentSetupError("topology", f"{TOPOLOGY.source}: the local backend starts {launcher.names}, "
                                                f"the compose file names {list(SERVICES)}")
    return launcher


class LocalCluster(StackOps):
    """Owns the service processes of one run through a LocalStack, whose pids go to local-stack.json so the
    runner can kill leftovers if this process dies."""

    backend = "local"

    def __init__(self, run_id: str, workdir: Path, api_keys: dict[str, str] | None = None):
        self.run_id = run_id
        self.project = project_name(run_id)     # what steering and bundles name this stack by
        self.workdir = Path(workdir)
        self.api_keys = dict(api_keys or API_KEYS)
        self.topology = TOPOLOGY
        self.services = list(SERVICES)
        self.networks: dict[str, str] = {}
        self.launcher = launcher_for(self.workdir, self.api_keys)
        self.ports, self.procs, self.paused = self.launcher.ports, self.launcher.procs, self.launcher.paused
        self.curve_root = self.launcher.curve_root
        self.state: dict[str, dict] = {s: {"restart_count": 0} for s in self.services}
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="local-reaper")

    # ---- addresses ------------------------------------------------------------------------------
    def orchestrator_port(self, kind: str) -> int:
        """The orchestrator's loopback port for `kind` (http, router, events)."""
        return self.ports["orchestrator"][kind]

    def router_url_of(self, service: str) -> str:
        return self.launcher.router_url_of(service)

    def http_url(self, service: str) -> str:
        return self.launcher.http_url(service)

    def network_name(self, short: str) -> str:
        raise NemesisError(f"network {short!r}: {NEEDS_DOCKER}")

    def container_id(self, service: str) -> str:
        raise NemesisError(f"container of {service}: {NEEDS_DOCKER}")

    # ---- processes ------------------------------------------------------------------------------
    def env_for(self, service: str) -> dict[str, str]:
        """Environment of a service process (config only through env vars)."""
        return self.launcher.env_for(service)

    def spawn(self, service: str) -> None:
        """Start a service process (the launcher's spawn) and note when it started."""
        self.launcher.spawn(service)
        self.state[service].update(started_at=now_iso(), finished_at=None, exit_code=None)

    def _reap_once(self) -> None:
        for service, proc in list(self.procs.items()):
            if proc.poll() is not None and not self.state[service].get("finished_at"):
                rc = proc.returncode
                self.state[service].update(finished_at=now_iso(), exit_code=128 - rc if rc < 0 else rc)

    def _reap(self) -> None:
        while not self._stop.wait(0.05):
            self._reap_once()

    def up(self, timeout_s: float = 30) -> float:
        """Start every service and wait until each answers /health 200; returns seconds taken."""
        start = time.monotonic()
        for service in self.services:
            self.spawn(service)
        if not self._reaper.is_alive():
            self._stop.clear()
            self._reaper = threading.Thread(target=self._reap, daemon=True, name="local-reaper")
            self._reaper.start()
        try:
            self.wait_healthy(timeout_s)
        except EnvironmentSetupError:
            self.down()
            raise
        return time.monotonic() - start

    def recreate(self, timeout_s: float = 30) -> float:
        """A fresh stack (new processes, empty registry and caches): down, wipe data, then up."""
        self.down()
        self._reaper.join(timeout=1)
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        self.procs.clear()
        self.paused.clear()
        self.state = {s: {"restart_count": 0} for s in self.services}
        return self.up(timeout_s)

    def healthy(self, service: str) -> bool:
        return answers_health(self.http_url(service), 1)

    def probe_health(self) -> tuple[list[str], list[str]]:
        """(services whose process exited, services not answering GET /health)."""
        dead = [s for s, p in self.procs.items() if p.poll() is not None]
        return dead, [s for s in self.services if s not in dead and not self.healthy(s)]

    def diagnose(self, headline: str, services: list[str], lines: int = 15) -> str:
        """The headline, then each service's pid, exit code, log path and last log lines."""
        return self.launcher.diagnose(headline, services, lines)

    def down(self, grace_s: float = 5) -> list[str]:
        """SIGTERM every process, SIGKILL its group after the grace period; returns services that would not die."""
        self.launcher.stop(grace_s)
        self._reap_once()
        self._stop.set()
        return [s for s, p in self.procs.items() if p.poll() is None]

    # ---- fault primitives -----------------------------------------------------------------------
    def proc(self, service: str) -> subprocess.Popen:
        if service not in self.procs:
            raise NemesisError(f"no process for service {service!r}")
        return self.procs[service]

    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.proc(service)
        self.launcher.kill(service, signal)

    def pause(self, service: str) -> None:
        """SIGSTOP the service's process group (the process and its engine)."""
        self.proc(service)
        self.launcher.pause(service)

    def unpause(self, service: str) -> None:
        self.proc(service)
        self.launcher.resume(service)

    def stop(self, service: str, timeout_s: float = 10) -> None:
        self.proc(service)
        self.launcher.terminate(service, timeout_s)

    def start(self, service: str) -> None:
        if self.proc(service).poll() is not None:
            self.spawn(service)

    def restart(self, service: str, timeout_s: float = 10) -> None:
        self.stop(service, timeout_s)
        self.state[service]["restart_count"] += 1
        self.spawn(service)

    def disconnect(self, service: str, network: str) -> None:
        raise NemesisError(f"disconnect {service} from {network}: {NEEDS_DOCKER}")

    def connect(self, service: str, network: str) -> None:
        raise NemesisError(f"connect {service} to {network}: {NEEDS_DOCKER}")

    def exec(self, service: str, cmd: Any, user: str = "root", check: bool = True) -> Any:
        raise NemesisError(f"exec in {service}: {NEEDS_DOCKER}")

    def inspect(self, service: str) -> dict:
        """Process state in the shape of the docker backend's inspect()."""
        proc = self.procs.get(service)
        if proc is None:
            return {}
        st = self.state[service]
        alive = proc.poll() is None
        status = ("paused" if service in self.paused else "running") if alive else "exited"
        rc = proc.returncode
        return {"id": str(proc.pid), "name": service, "status": status, "running": alive, "paused": service in self.paused,
                "exit_code": None if alive else (128 - rc if rc < 0 else rc), "oom_killed": False,
                "restart_count": st["restart_count"], "started_at": st.get("started_at"),
                "finished_at": st.get("finished_at") or (None if alive else now_iso()),
                "health": ("healthy" if alive and self.healthy(service) else "unhealthy"), "networks": {}, "pid": proc.pid}

    def logs(self, service: str, since: float | None = None) -> str:
        """A service's log since a UNIX time (JSON lines filtered by their ts; other lines follow the last)."""
        path = self.launcher.log_path(service)
        if not path.exists():
            return ""
        lines = path.read_text("utf-8", "replace").splitlines(keepends=True)
        if not since:
            return "".join(lines)
        keep, out = False, []
        for line in lines:
            if line.startswith("{"):
                try:
                    keep = float(json.loads(line).get("ts", 0)) >= since
                except (ValueError, AttributeError):
                    pass
            if keep:
                out.append(line)
        return "".join(out)

    def ps(self) -> str:
        return "\n".join(f"{s:12} pid={st.get('pid')} {st.get('status')} exit={st.get('exit_code')}"
                         for s, st in ((s, self.inspect(s)) for s in self.services))

    # ---- reset ----------------------------------------------------------------------------------
    def heal(self) -> list[str]:
        """Resume paused and start exited processes."""
        healed = []
        for service in self.services:
            if service in self.paused:
                self.unpause(service); healed.append(f"unpause {service}")
            if self.proc(service).poll() is not None:
                self.start(service); healed.append(f"start {service}")
        return healed

    def describe(self) -> dict:
        return {"backend": "local", "run_id": self.run_id, "workdir": str(self.workdir), "api_url": self.api_url,
                "events_url": self.events_url, "router_url": self.router_url, "api_keys": self.api_keys}
