"""The same stack as local processes on 127.0.0.1 with free ports (no Docker engine): 1 orchestrator,
2 hives, 2 workers per hive, same service names; kill/pause by signals; network faults need docker."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal as signals
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


from harness.stackops import (API_KEYS, ROOT, SERVICES, TOPOLOGY, StackOps, answers_health, free_port, keys_env,
                              make_curve_keys, project_name)
from harness.errors import EnvironmentSetupError, NemesisError

MODULES = {"orchestrator": "services.orchestrator", "hive": "services.worker_manager", "worker": "services.mock_worker"}
NEEDS_DOCKER = "needs the docker backend (container networks); run with --backend docker"


def now_iso() -> str:
    """Current UTC time in the format `docker inspect` uses for StartedAt/FinishedAt."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def kind_of(service: str) -> str:
    return "orchestrator" if service == "orchestrator" else service.split("-")[0]


class LocalCluster(StackOps):
    """Owns the service processes of one run; state (pids, ports) is mirrored to a JSON file so the
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
        self.ports = {s: {"http": free_port()} for s in self.services}
        self.ports["orchestrator"].update(router=free_port(), events=free_port())
        for hive in ("hive-a", "hive-b"):
            self.ports[hive]["router"] = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.paused: set[str] = set()
        self.state: dict[str, dict] = {s: {"restart_count": 0} for s in self.services}
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="local-reaper")
        self.curve_root = make_curve_keys(self.workdir / "curve")

    # ---- addresses ------------------------------------------------------------------------------
    def orchestrator_port(self, kind: str) -> int:
        """The orchestrator's loopback port for `kind` (http, router, events)."""
        return self.ports["orchestrator"][kind]

    def router_url_of(self, service: str) -> str:
        return self.router_url if service == "orchestrator" else f"tcp://127.0.0.1:{self.ports[service]['router']}"

    def http_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]['http']}"

    def network_name(self, short: str) -> str:
        raise NemesisError(f"network {short!r}: {NEEDS_DOCKER}")

    def container_id(self, service: str) -> str:
        raise NemesisError(f"container of {service}: {NEEDS_DOCKER}")

    # ---- processes ------------------------------------------------------------------------------
    def env_for(self, service: str) -> dict[str, str]:
        """Environment of a service process (config only through env vars)."""
        kind, p = kind_of(service), self.ports[service]
        env = dict(os.environ, APIARY_HTTP_HOST="127.0.0.1", APIARY_HTTP_PORT=str(p["http"]),
                   APIARY_SHUTDOWN_GRACE_S=os.environ.get("APIARY_SHUTDOWN_GRACE_S", "2"), PYTHONUNBUFFERED="1")
        env.update(self.curve_env(kind))
        if kind == "orchestrator":
            env.update(APIARY_ROUTER_BIND=self.router_url, APIARY_EVENTS_BIND=self.events_url,
                       APIARY_DB_PATH=str(self.workdir / "data" / "registry.db"), APIARY_API_KEYS=keys_env(self.api_keys),
                       APIARY_QUEUE_MAX=os.environ.get("APIARY_QUEUE_MAX", "128"))
        elif kind == "hive":
            env.update(APIARY_HIVE_ID=service, APIARY_ORCHESTRATOR_ADDR=self.router_url,
                       APIARY_WORKER_BIND=self.router_url_of(service),
                       APIARY_MODEL_CACHE=str(self.workdir / "data" / service))
        else:
            hive = "hive-" + service.split("-")[1][0]
            env.update(APIARY_WORKER_ID=service, APIARY_HIVE_ADDR=self.router_url_of(hive),
                       APIARY_LEDGER_PATH=str(self.workdir / "data" / f"ledger-{service}.jsonl"))
        return env

    def spawn(self, service: str) -> None:
        """Start a service process, its output appended to logs/<service>.log."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "logs" / f"{service}.log", "ab")
        self.procs[service] = subprocess.Popen([sys.executable, "-m", MODULES[kind_of(service)]], cwd=ROOT,
                                               env=self.env_for(service), stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        log.close()
        self.state[service].update(started_at=now_iso(), finished_at=None, exit_code=None)
        self.save_state()

    def save_state(self) -> None:
        """Mirror pids and ports to local-stack.json (the runner's safety net reads it)."""
        data = {"run_id": self.run_id, "pids": {s: p.pid for s, p in self.procs.items()}, "ports": self.ports}
        (self.workdir / "local-stack.json").write_text(json.dumps(data))

    def _reap(self) -> None:
        while not self._stop.wait(0.05):
            for service, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.state[service].get("finished_at"):
                    rc = proc.returncode
                    self.state[service].update(finished_at=now_iso(), exit_code=128 - rc if rc < 0 else rc)

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
        out = [headline]
        for s in services:
            st = self.inspect(s)
            out.append(f"--- {s}: status={st.get('status')} exit_code={st.get('exit_code')}")
            out += ["    " + ln for ln in self.logs(s).splitlines()[-lines:]]
        return "\n".join(out)

    def down(self, grace_s: float = 5) -> list[str]:
        """SIGTERM every process, SIGKILL after the grace period; returns services that would not die."""
        self.unpause_all()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signals.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._stop.set()
        return [s for s, p in self.procs.items() if p.poll() is None]

    def unpause_all(self) -> None:
        for service in list(self.paused):
            self.unpause(service)

    # ---- fault primitives -----------------------------------------------------------------------
    def proc(self, service: str) -> subprocess.Popen:
        if service not in self.procs:
            raise NemesisError(f"no process for service {service!r}")
        return self.procs[service]

    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.proc(service).send_signal(getattr(signals, signal) if isinstance(signal, str) else signal)

    def pause(self, service: str) -> None:
        self.proc(service).send_signal(signals.SIGSTOP)
        self.paused.add(service)

    def unpause(self, service: str) -> None:
        self.proc(service).send_signal(signals.SIGCONT)
        self.paused.discard(service)

    def stop(self, service: str, timeout_s: float = 10) -> None:
        proc = self.proc(service)
        if service in self.paused:
            self.unpause(service)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

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
        path = self.workdir / "logs" / f"{service}.log"
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


def kill_leftovers(workdir: Path) -> list[int]:
    """Kill processes recorded in local-stack.json that are still alive (runner's safety net)."""
    path = Path(workdir) / "local-stack.json"
    if not path.exists():
        return []
    import psutil
    killed = []
    for pid in json.loads(path.read_text()).get("pids", {}).values():
        try:
            if not any(m in " ".join(psutil.Process(pid).cmdline()) for m in MODULES.values()):
                continue   # pid reused by something that is not ours
            os.killpg(pid, signals.SIGCONT)
            os.killpg(pid, signals.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return killed
