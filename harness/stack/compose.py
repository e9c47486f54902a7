"""ComposeStack: any compose file's stack as one compose project seen through the Docker SDK (the kit's
container backend). up() starts it in depends_on order, each level gated on its services' x-apiary health
checks; down() removes everything the project and the run's labels own; between them, the fault
primitives (kill, pause, stop, start, network disconnect and connect with aliases, exec) and state
(inspect, logs, published ports). It knows nothing of any one stack: a suite subclasses it for its
secrets, keys and addresses (apiary_suite/cluster.py does, for Apiary)."""
from __future__ import annotations

import concurrent.futures as futures
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.compose import compose_command, compose_major, run_cmd
from harness.errors import ComposeError, EnvironmentSetupError, NemesisError
from harness.stack.health import HealthWaits, answers_health
from harness.stack.topology import Topology, load
from harness.startup import dependency_levels, http_healthy, start_container, start_in_order
from harness.sweep import RUN_LABELS, sweep


PAUSE_TRIES = 3           # docker pause attempts when the engine cannot freeze the container
PAUSE_RETRY_S = 0.1


def project_name(run_id: str, prefix: str = "apiary-") -> str:
    """Compose project name of a run (lowercase letters, digits, dashes)."""
    return prefix + re.sub(r"[^a-z0-9-]", "", run_id.lower())


def docker_client(timeout_s: float = 30):
    """A Docker SDK client, or EnvironmentSetupError naming why the engine is unreachable."""
    import docker  # local import: the local backend runs without the SDK's engine
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        raise EnvironmentSetupError("no Docker engine", str(exc).splitlines()[0][:200]) from exc


class ComposeStack(HealthWaits):
    """One compose project of one run (see the module docstring)."""

    backend = "docker"

    def __init__(self, run_id: str, compose_file: str | os.PathLike, compose: list[str] | None = None,
                 client: Any = None, topology: Topology | None = None, image_tag: str = "local"):
        self.run_id = run_id
        self.compose_file = Path(compose_file).resolve()
        self.topology = topology or load(self.compose_file)
        self.project = project_name(run_id)
        self.compose_cmd = compose or compose_command()
        self.image_tag = image_tag
        self.services = list(self.topology.names)
        self.networks = {short: self.network_name(short) for short in self.topology.networks}
        self.client = client or docker_client()
        self._aliases: dict[tuple[str, str], list[str]] = {}
        self._ports: dict[str, dict[int, int]] = {}
        self._ids: dict[str, str] = {}
        self._probe_urls: dict[str, str] = {}
        self.startup: list[dict] = []
        self.startup_probed_s = 0.0

    # ---- compose --------------------------------------------------------------------------------
    def compose_env(self) -> dict:
        """Environment for compose: the run id (labels) and the image tag."""
        env = dict(os.environ, APIARY_RUN_ID=self.run_id, APIARY_IMAGE_TAG=self.image_tag)
        env.pop("COMPOSE_PROJECT_NAME", None)
        return env

    def compose(self, *args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run a compose subcommand for this project."""
        cmd = [*self.compose_cmd, "-p", self.project, "-f", str(self.compose_file), *args]
        return run_cmd(cmd, env=self.compose_env(), timeout_s=timeout_s, check=check)

    def prepare_attempt(self) -> None:
        """Before each start attempt (a subclass picks its fixed host ports here)."""

    def up(self, timeout_s: float = 120) -> float:
        """Create and start the stack, then wait until every service answers its health check; returns seconds.

        Compose v2 creates every container with all its networks, so the stack is started here in its
        depends_on order, each level gated on its services' own health check (harness/startup.py). Compose
        v1 attaches extra networks only when it starts a container itself, so with v1 `up -d` does the
        ordering (gated on Docker's health flag)."""
        import docker.errors
        start = time.monotonic()
        v2 = compose_major(self.compose_cmd) >= 2
        for attempt in (1, 2):   # a fixed host port taken meanwhile: pick again once
            self.prepare_attempt()
            self._ids.clear()
            self._ports.clear()
            self._probe_urls.clear()
            try:
                if not v2:
                    self.compose("up", "-d", "--no-build", "--remove-orphans", timeout_s=timeout_s)
                    break
                self.compose("up", "--no-start", "--no-build", "--remove-orphans", timeout_s=timeout_s)
                self.startup = start_in_order(dependency_levels(self.compose_file), start_container(self),
                                              http_healthy(self.probe_url, self.topology.health_path),
                                              timeout_s - (time.monotonic() - start),
                                              lambda bad: self.diagnose("state:", bad))
                break
            except (ComposeError, docker.errors.APIError) as exc:
                if attempt == 1 and "already allocated" in str(exc) + getattr(exc, "stderr", ""):
                    self.compose("down", "-v", "--remove-orphans", "-t", "0", timeout_s=60, check=False)
                    continue
                raise EnvironmentSetupError("stack did not start", self.diagnose(str(exc))) from exc
        self.startup_probed_s = round(time.monotonic() - start, 3)
        self.wait_healthy(max(30.0, timeout_s - (time.monotonic() - start)))
        return time.monotonic() - start

    def probe_url(self, service: str) -> str:
        """HTTP base URL for the start-up probe (the container IP, read once per start)."""
        if service not in self._probe_urls:
            self._probe_urls[service] = self.http_url(service)
        return self._probe_urls[service]

    def down(self, timeout_s: float = 60) -> list[str]:
        """Remove the stack (containers, networks, volumes), then sweep by label; returns leftovers."""
        self._ports.clear()
        self._ids.clear()
        self.remove_containers()
        try:
            self.compose("down", "-v", "--remove-orphans", "-t", "1", timeout_s=timeout_s)
        except ComposeError:
            pass   # the label sweep below is the safety net
        return sweep(self.client, self.run_id, self.project)

    def remove_containers(self) -> None:
        """Force-remove the run's containers in parallel (teardown needs no graceful drain): the compose
        project's and helper containers labelled with the run."""
        labels = [f"com.docker.compose.project={self.project}"] + [f"{lab}={self.run_id}" for lab in RUN_LABELS]
        found = list({c.id: c for lab in labels for c in self.client.containers.list(all=True, filters={"label": lab})}.values())

        def remove(c: Any) -> None:
            try:
                c.remove(force=True, v=True)
            except Exception:  # noqa: BLE001 - compose down and the label sweep follow
                pass
        if found:
            with futures.ThreadPoolExecutor(len(found)) as pool:
                list(pool.map(remove, found))

    def recreate(self, timeout_s: float = 120) -> float:
        """A fresh stack for this run (same project): down, then up."""
        self.down()
        self._aliases.clear()
        self._ids.clear()
        return self.up(timeout_s)

    def ps(self) -> str:
        """`compose ps` output (never raises)."""
        proc = self.compose("ps", check=False, timeout_s=30)
        return proc.stdout + proc.stderr

    # ---- containers -----------------------------------------------------------------------------
    def container_ids(self, refresh: bool = False) -> dict[str, str]:
        """service -> container id of this project (one list call, cached until the stack changes)."""
        if refresh or not self._ids:
            found = self.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={self.project}"})
            self._ids = {c.labels.get("com.docker.compose.service"): c.id for c in found}
        return self._ids

    def container(self, service: str) -> Any:
        """The container of a compose service (fresh attrs)."""
        import docker.errors
        for refresh in (False, True):
            cid = self.container_ids(refresh).get(service)
            if cid:
                try:
                    return self.client.containers.get(cid)
                except docker.errors.NotFound:
                    continue
        raise NemesisError(f"no container for service {service!r} in project {self.project}")

    def container_id(self, service: str) -> str:
        return self.container(service).id

    def network_name(self, short: str) -> str:
        """The compose-prefixed name of a network."""
        return f"{self.project}_{short}"

    def inspect(self, service: str) -> dict:
        """State of a service's container: status, exit code, OOMKilled, restarts, health, networks."""
        try:
            attrs = self.container(service).attrs
        except NemesisError:
            return {}
        state = attrs.get("State", {})
        nets = attrs.get("NetworkSettings", {}).get("Networks") or {}
        return {"id": attrs["Id"][:12], "name": attrs["Name"].lstrip("/"), "status": state.get("Status"),
                "running": state.get("Running"), "paused": state.get("Paused"), "exit_code": state.get("ExitCode"),
                "oom_killed": state.get("OOMKilled"), "restart_count": attrs.get("RestartCount", 0),
                "started_at": state.get("StartedAt"), "finished_at": state.get("FinishedAt"),
                "health": (state.get("Health") or {}).get("Status"), "error": state.get("Error"),
                "networks": {n: {"ip": v.get("IPAddress"), "aliases": v.get("Aliases") or [], "gateway": v.get("Gateway")}
                             for n, v in nets.items()}}

    def host_port(self, service: str, port: int) -> int:
        """The 127.0.0.1 host port published for a container port (cached until the container restarts)."""
        if port not in self._ports.get(service, {}):
            ports = self.container(service).attrs["NetworkSettings"].get("Ports") or {}
            self._ports[service] = {int(k.split("/")[0]): int(v[0]["HostPort"]) for k, v in ports.items() if v}
        try:
            return self._ports[service][port]
        except KeyError:
            raise NemesisError(f"{service} publishes no host port for {port} (is it running?)") from None

    def http_url(self, service: str, state: dict | None = None) -> str:
        """HTTP base URL of a service's health check: its container IP on any network it is still on (works
        while one link is cut), else its published port; `state` is an inspect() already at hand."""
        port = self.topology.health_port(service)
        if port is None:
            raise NemesisError(f"{self.topology.source}: x-apiary.services.{service}.health.port is not set")
        for meta in ((state or self.inspect(service)).get("networks") or {}).values():
            if meta.get("ip"):
                return f"http://{meta['ip']}:{port}"
        return f"http://127.0.0.1:{self.host_port(service, port)}"

    # ---- fault primitives -----------------------------------------------------------------------
    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.container(service).kill(signal=signal)

    def pause(self, service: str, tries: int = PAUSE_TRIES) -> None:
        """docker pause, tried again when the engine fails to freeze the cgroup (a 500 "unable to freeze"
        under load: runc thaws what it froze and gives up; seen in a CI soak); the last error is raised."""
        import docker
        for attempt in range(1, tries + 1):
            try:
                self.container(service).pause()
                return
            except docker.errors.APIError as exc:
                if attempt == tries or exc.status_code != 500 or "already paused" in str(exc.explanation):
                    raise
                time.sleep(PAUSE_RETRY_S * attempt)       # bounded: at most tries - 1 short waits

    def unpause(self, service: str) -> None:
        self.container(service).unpause()

    def stop(self, service: str, timeout_s: int = 10) -> None:
        self.container(service).stop(timeout=timeout_s)

    def start(self, service: str) -> None:
        self._ports.pop(service, None)
        self.container(service).start()

    def restart(self, service: str, timeout_s: int = 10) -> None:
        self._ports.pop(service, None)
        self.container(service).restart(timeout=timeout_s)

    def disconnect(self, service: str, network: str) -> None:
        """Cut a service off a network (short name), remembering its aliases for connect()."""
        full = self.network_name(network)
        container = self.container(service)
        meta = (container.attrs["NetworkSettings"].get("Networks") or {}).get(full)
        if meta is None:
            return   # already cut: idempotent
        self._aliases[(service, network)] = [a for a in (meta.get("Aliases") or []) if a != container.id[:12]]
        self.client.networks.get(full).disconnect(container, force=True)

    def connect(self, service: str, network: str) -> None:
        """Re-attach a service to a network with its compose aliases (a bare connect loses them)."""
        full = self.network_name(network)
        container = self.container(service)
        if full in (container.attrs["NetworkSettings"].get("Networks") or {}):
            return
        aliases = self._aliases.pop((service, network), None) or [service]
        self.client.networks.get(full).connect(container, aliases=aliases)

    def exec(self, service: str, cmd: list[str] | str, user: str = "root", check: bool = True) -> Any:
        """Run a command in a service's container; NemesisError when it exits non-zero and check is set."""
        result = self.container(service).exec_run(cmd, user=user)
        if check and result.exit_code != 0:
            out = (result.output or b"").decode("utf-8", "replace")[-800:]
            raise NemesisError(f"exec {cmd!r} in {service} exited {result.exit_code}: {out}")
        return result

    def logs(self, service: str, since: float | None = None) -> str:
        """stdout+stderr of a service's container since a UNIX time (all when None)."""
        try:
            kw = {"since": float(since)} if since else {}
            return self.container(service).logs(stdout=True, stderr=True, **kw).decode("utf-8", "replace")
        except NemesisError:
            return ""

    # ---- health and heal ------------------------------------------------------------------------
    def probe_health(self) -> tuple[list[str], list[str]]:
        """(services whose container exited, services not running or not answering their check), in parallel."""
        def probe(service: str) -> str:
            st = self.inspect(service)
            if st.get("status") in ("exited", "dead"):
                return "dead"
            if not st.get("running") or st.get("paused"):
                return "down"
            return "ok" if answers_health(self.http_url(service, st), path=self.topology.health_path(service)) else "down"
        with futures.ThreadPoolExecutor(len(self.services)) as pool:
            verdicts = dict(zip(self.services, pool.map(probe, self.services)))
        return [s for s, v in verdicts.items() if v == "dead"], [s for s, v in verdicts.items() if v == "down"]

    def diagnose(self, headline: str, services: list[str] | None = None, lines: int = 15) -> str:
        """Headline plus, per service, its state and last log lines."""
        out = [headline]
        for s in services or self.services:
            st = self.inspect(s)
            out.append(f"--- {s}: status={st.get('status')} health={st.get('health')} "
                       f"exit_code={st.get('exit_code')} oom_killed={st.get('oom_killed')}")
            out += ["    " + ln for ln in self.logs(s).splitlines()[-lines:]]
        return "\n".join(out)

    def heal(self) -> list[str]:
        """Unpause, start, reconnect (with aliases) and flush iptables everywhere; returns what was healed."""
        healed: list[str] = []

        def heal_one(service: str) -> None:
            st = self.inspect(service)
            if st.get("paused"):
                self.unpause(service); healed.append(f"unpause {service}")
            elif st.get("status") in ("exited", "created", "dead"):
                self.start(service); healed.append(f"start {service}")
            for net in self.topology.networks_of(service):
                if self.network_name(net) not in (self.inspect(service).get("networks") or {}):
                    self.connect(service, net); healed.append(f"connect {service} {net}")
            if self.topology.net_admin(service):
                self.exec(service, ["sh", "-c", "iptables -w -F; iptables -w -X"], check=False)
        with futures.ThreadPoolExecutor(len(self.services)) as pool:
            list(pool.map(heal_one, self.services))
        return healed
