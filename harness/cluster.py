"""The compose stack of one run: up/down/ps/logs with a per-run project name and labels, health
wait with a deadline, reset between scenarios, and the fault primitives the step library uses
(what the local backend shares with it lives in harness/stackops.py). The bearer keys reach the
orchestrator only as a file: up() writes the run's secrets directory (harness/secrets.py), compose
bind-mounts it read-only, down() deletes it."""
from __future__ import annotations

import concurrent.futures as futures
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.compose import compose_command, compose_major, run_cmd
from harness.errors import ComposeError, EnvironmentSetupError, NemesisError
from harness.secrets import curve_root, read_api_keys, remove_run_secrets, secrets_dir, write_run_secrets
from harness.stack import compose_file
from harness.stackops import (API_KEYS, NET_ADMIN_SERVICES, NETWORKS, ORCHESTRATOR_PORTS, TOPOLOGY,
                              SERVICES, SHORT_NETWORKS, StackOps, answers_health, free_port, http_port,
                              project_name)
from harness.startup import dependency_levels, http_healthy, start_container, start_in_order
from harness.sweep import RUN_LABELS, sweep

COMPOSE_FILE = compose_file()      # $APIARY_COMPOSE_FILE or the repository's docker-compose.integration.yml


def docker_client(timeout_s: float = 30):
    """A Docker SDK client, or EnvironmentSetupError naming why the engine is unreachable."""
    import docker  # local import: the local backend runs without the SDK's engine
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        raise EnvironmentSetupError("no Docker engine", str(exc).splitlines()[0][:200]) from exc


class Cluster(StackOps):
    """One compose project (the whole stack of a run) seen through the Docker SDK. Its secrets live in
    <run_dir>/secrets; without a run_dir, up() makes a private temporary one that down() removes."""

    backend = "docker"

    def __init__(self, run_id: str, compose: list[str] | None = None, image_tag: str = "local",
                 api_keys: dict[str, str] | None = None, client: Any = None,
                 run_dir: str | os.PathLike | None = None):
        self.run_id = run_id
        self.run_dir = Path(run_dir) if run_dir else None
        self._temp_run_dir = run_dir is None
        self.curve_root = curve_root(self.run_dir)   # set again by write_secrets(); attach() finds it here
        self.project = project_name(run_id)
        self.compose_cmd = compose or compose_command()
        self.image_tag = image_tag
        self.api_keys = dict(api_keys or API_KEYS)
        self.topology = TOPOLOGY
        self.services = list(SERVICES)
        self.networks = {short: self.network_name(short) for short in SHORT_NETWORKS}
        self.client = client or docker_client()
        self._aliases: dict[tuple[str, str], list[str]] = {}
        self._ports: dict[str, dict[int, int]] = {}
        self._ids: dict[str, str] = {}
        self._probe_urls: dict[str, str] = {}
        self.startup: list[dict] = []
        self.startup_probed_s = 0.0
        self.fixed_ports = {"APIARY_HOST_PORT_HTTP": 0, "APIARY_HOST_PORT_ROUTER": 0, "APIARY_HOST_PORT_EVENTS": 0}

    # ---- description (the runner hands the stack to behave's process) ---------------------------
    def describe(self) -> dict:
        """What another process needs to attach to this stack (no keys: attach() reads the run's secrets)."""
        return {"backend": "docker", "run_id": self.run_id, "project": self.project, "compose": self.compose_cmd,
                "image_tag": self.image_tag, "run_dir": str(self.run_dir) if self.run_dir else None,
                "api_url": self.api_url, "events_url": self.events_url, "router_url": self.router_url}

    @classmethod
    def attach(cls, desc: dict) -> "Cluster":
        """A Cluster for a stack described by describe(), with the keys from its secrets directory."""
        run_dir = desc.get("run_dir")
        keys = (read_api_keys(run_dir) if run_dir else None) or desc.get("api_keys")
        return cls(desc["run_id"], compose=desc["compose"], image_tag=desc.get("image_tag", "local"),
                   api_keys=keys, run_dir=run_dir)

    # ---- secrets --------------------------------------------------------------------------------
    def write_secrets(self) -> Path:
        """Write the run's secrets directory (keys file for the orchestrator's bind mount); returns it."""
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.project}-"))
        path = write_run_secrets(self.run_dir, self.api_keys)
        self.curve_root = curve_root(self.run_dir)
        return path

    def remove_secrets(self) -> bool:
        """Delete the run's secrets directory (and a temporary run dir of our own); True when gone."""
        if self.run_dir is None:
            return True
        gone = remove_run_secrets(self.run_dir)
        self.curve_root = None
        if self._temp_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        return gone

    # ---- compose --------------------------------------------------------------------------------
    def compose_env(self) -> dict:
        """Environment for compose: run id (labels), image tag, ports, the secrets directory (never a key)."""
        env = dict(os.environ, APIARY_RUN_ID=self.run_id, APIARY_IMAGE_TAG=self.image_tag,
                   **{k: str(v) for k, v in self.fixed_ports.items()})
        for name in ("COMPOSE_PROJECT_NAME", "APIARY_API_KEYS", "APIARY_SECRETS_DIR"):
            env.pop(name, None)
        if self.run_dir is not None:
            env["APIARY_SECRETS_DIR"] = str(secrets_dir(self.run_dir))
        return env

    def compose(self, *args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run a compose subcommand for this project."""
        cmd = [*self.compose_cmd, "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return run_cmd(cmd, env=self.compose_env(), timeout_s=timeout_s, check=check)

    def up(self, timeout_s: float = 120) -> float:
        """Create and start the stack, then wait until every service answers /health; returns seconds.

        Compose v2 creates every container with all its networks, so the stack is started here in its
        depends_on order, each level gated on its services' own /health (harness/startup.py). Compose v1
        attaches extra networks only when it starts a container itself, so with v1 `up -d` does the
        ordering (gated on Docker's health flag). Docker's flag for the last level follows within one
        check interval; wait_reported_healthy() waits for it (the Stack health scenario asserts it)."""
        import docker.errors
        start = time.monotonic()
        v2 = compose_major(self.compose_cmd) >= 2
        self.write_secrets()   # before any container exists: a missing bind source would become a directory
        for attempt in (1, 2):   # a picked port taken meanwhile: pick again once
            self.fixed_ports = {k: free_port() for k in self.fixed_ports}
            self._ids.clear()
            self._ports.clear()
            self._probe_urls.clear()
            try:
                if not v2:
                    self.compose("up", "-d", "--no-build", "--remove-orphans", timeout_s=timeout_s)
                    break
                self.compose("up", "--no-start", "--no-build", "--remove-orphans", timeout_s=timeout_s)
                self.startup = start_in_order(dependency_levels(COMPOSE_FILE), start_container(self),
                                              http_healthy(self.probe_url), timeout_s - (time.monotonic() - start),
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
        """Remove the stack (containers, networks, volumes) and the run's secrets, then sweep by label;
        returns leftovers (failures to remove)."""
        self._ports.clear()
        self._ids.clear()
        self.remove_containers()
        try:
            self.compose("down", "-v", "--remove-orphans", "-t", "1", timeout_s=timeout_s)
        except ComposeError:
            pass   # the label sweep below is the safety net
        failures = sweep(self.client, self.run_id, self.project)
        secrets_path = secrets_dir(self.run_dir) if self.run_dir else None
        if not self.remove_secrets():
            failures.append(f"secrets directory {secrets_path} could not be removed")
        return failures

    def remove_containers(self) -> None:
        """Force-remove the run's containers in parallel (teardown needs no graceful drain): the compose
        project's and helper containers labelled with the run (rogue peers, extra workers)."""
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
                "networks": {n: {"ip": v.get("IPAddress"), "aliases": v.get("Aliases") or []} for n, v in nets.items()}}

    def host_port(self, service: str, port: int) -> int:
        """The 127.0.0.1 host port published for a container port (cached until the container restarts)."""
        if port not in self._ports.get(service, {}):
            ports = self.container(service).attrs["NetworkSettings"].get("Ports") or {}
            self._ports[service] = {int(k.split("/")[0]): int(v[0]["HostPort"]) for k, v in ports.items() if v}
        try:
            return self._ports[service][port]
        except KeyError:
            raise NemesisError(f"{service} publishes no host port for {port} (is it running?)") from None

    def orchestrator_port(self, kind: str) -> int:
        """The orchestrator's published 127.0.0.1 port for `kind` (http, router, events)."""
        return self.host_port("orchestrator", ORCHESTRATOR_PORTS[kind])

    def http_url(self, service: str, state: dict | None = None) -> str:
        """HTTP base URL of a service: the orchestrator through its published port; hives and workers
        through their container IP on any network they are still on (works while one link is cut);
        `state` is an inspect() already at hand."""
        if service == "orchestrator":
            return self.api_url
        for meta in ((state or self.inspect(service)).get("networks") or {}).values():
            if meta.get("ip"):
                return f"http://{meta['ip']}:{http_port(service)}"
        return f"http://127.0.0.1:{self.host_port(service, http_port(service))}"

    # ---- fault primitives -----------------------------------------------------------------------
    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.container(service).kill(signal=signal)

    def pause(self, service: str) -> None:
        self.container(service).pause()

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

    # ---- health, readiness, reset ---------------------------------------------------------------
    def probe_health(self) -> tuple[list[str], list[str]]:
        """(services whose container exited, services not running or not answering GET /health), in parallel."""
        def probe(service: str) -> str:
            st = self.inspect(service)
            if st.get("status") in ("exited", "dead"):
                return "dead"
            if not st.get("running") or st.get("paused"):
                return "down"
            return "ok" if answers_health(self.http_url(service, st)) else "down"
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
            for net in NETWORKS[service]:
                if self.network_name(net) not in (self.inspect(service).get("networks") or {}):
                    self.connect(service, net); healed.append(f"connect {service} {net}")
            if service in NET_ADMIN_SERVICES:
                self.exec(service, ["sh", "-c", "iptables -w -F; iptables -w -X"], check=False)
        with futures.ThreadPoolExecutor(len(self.services)) as pool:
            list(pool.map(heal_one, self.services))
        return healed
