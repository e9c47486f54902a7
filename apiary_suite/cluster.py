"""Apiary's compose stack of one run: the kit's ComposeStack (harness/stack/compose.py) plus what only
Apiary has: the run's secrets (the bearer keys reach the orchestrator only as a file: up() writes the
run's secrets directory (apiary_suite/secrets.py), compose bind-mounts it read-only, down() deletes it), fixed
published ports for the orchestrator, the API keys, and describe()/attach() for the behave process."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from apiary_suite.secrets import curve_root, read_api_keys, remove_run_secrets, secrets_dir, write_run_secrets
from harness.stack import compose_file
from harness.stack.compose import ComposeStack, docker_client  # noqa: F401 (docker_client re-exported)
from apiary_suite.stackops import API_KEYS, ORCHESTRATOR_PORTS, TOPOLOGY, StackOps, free_port

COMPOSE_FILE = compose_file()      # $APIARY_COMPOSE_FILE or the repository's docker-compose.integration.yml


class Cluster(StackOps, ComposeStack):
    """One compose project (the whole stack of a run) seen through the Docker SDK. Its secrets live in
    <run_dir>/secrets; without a run_dir, up() makes a private temporary one that down() removes."""

    backend = "docker"

    def __init__(self, run_id: str, compose: list[str] | None = None, image_tag: str = "local",
                 api_keys: dict[str, str] | None = None, client: Any = None,
                 run_dir: str | os.PathLike | None = None):
        ComposeStack.__init__(self, run_id, COMPOSE_FILE, compose=compose, client=client, topology=TOPOLOGY,
                              image_tag=image_tag)
        self.run_dir = Path(run_dir) if run_dir else None
        self._temp_run_dir = run_dir is None
        self.curve_root = curve_root(self.run_dir)   # set again by write_secrets(); attach() finds it here
        self.api_keys = dict(api_keys or API_KEYS)
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
        env = ComposeStack.compose_env(self)
        env.update({k: str(v) for k, v in self.fixed_ports.items()})
        for name in ("APIARY_API_KEYS", "APIARY_SECRETS_DIR"):
            env.pop(name, None)
        if self.run_dir is not None:
            env["APIARY_SECRETS_DIR"] = str(secrets_dir(self.run_dir))
        return env

    def prepare_attempt(self) -> None:
        """Fixed host ports for the orchestrator (stable across a container restart), picked free."""
        self.fixed_ports = {k: free_port() for k in self.fixed_ports}

    def up(self, timeout_s: float = 120) -> float:
        """Write the run's secrets (before any container exists: a missing bind source would become a
        directory), then ComposeStack.up()."""
        self.write_secrets()
        return ComposeStack.up(self, timeout_s)

    def down(self, timeout_s: float = 60) -> list[str]:
        """Remove the stack and the run's secrets; returns leftovers (failures to remove)."""
        failures = ComposeStack.down(self, timeout_s)
        secrets_path = secrets_dir(self.run_dir) if self.run_dir else None
        if not self.remove_secrets():
            failures.append(f"secrets directory {secrets_path} could not be removed")
        return failures

    # ---- addresses ----------------------------------------------------------------------------
    def orchestrator_port(self, kind: str) -> int:
        """The orchestrator's published 127.0.0.1 port for `kind` (http, router, events)."""
        return self.host_port("orchestrator", ORCHESTRATOR_PORTS[kind])

    def http_url(self, service: str, state: dict | None = None) -> str:
        """HTTP base URL of a service: the orchestrator through its published port; the others as
        ComposeStack.http_url (container IP on any network still attached, works while one link is cut)."""
        if service == "orchestrator":
            return self.api_url
        return ComposeStack.http_url(self, service, state)
