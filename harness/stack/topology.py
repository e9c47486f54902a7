"""A stack's topology, read from its compose file: services, the networks each attaches to, which may
change their own iptables rules (cap_add NET_ADMIN), plus what compose cannot say, from the file's
`x-apiary:` block: the host-facing networks, each service's role and readiness check, the role ranks and
listening ports link faults need, the storage a storage fault may touch, the reset hook, the oom trigger.

The block (docs/kit.md describes every key):

    x-apiary:
      host_facing: [edge]                 # never cut: the harness reaches the stack through them
      roles:                              # link faults move the lower-ranked side; listen: the port peers dial
        orchestrator: {rank: 2, listen: 5555}
        worker: {rank: 0, listen: 8001}
      services:                           # every service the harness runs, in start order
        orchestrator: {role: orchestrator, health: {port: 8080, path: /health}}
        worker-a1: {role: worker, health: {port: 8001}}
      default_role: worker                # containers the harness adds itself (extra workers)
      storage: {service: orchestrator, dir: /data, file: /data/registry.db, user: "10001",
                header_hex: "53514c69746520666f726d6174203300", noticed: {event: registry.corrupt}}
      reset: {service: orchestrator, method: POST, path: /v1/admin/reset}

Two readers: `from_compose_config()` over `docker compose config --format json` (what the compose CLI
resolved: the truth for a run) and `load()` over the YAML itself (no CLI; anchors and merge keys resolved
by the YAML loader; ${VAR} interpolation is not needed for any key read here). Knows nothing of any one
stack: a ConfigError names the file and the key that is wrong.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = "x-apiary"


class TopologyError(ValueError):
    """A compose file whose topology cannot be read; the message names the file and the key."""


@dataclass(frozen=True)
class Service:
    """One service of the stack as the harness sees it."""

    name: str
    role: str
    networks: tuple[str, ...]
    net_admin: bool
    health_port: int | None = None
    health_path: str = "/health"


@dataclass(frozen=True)
class Topology:
    """Services (in the block's order), networks and the x-apiary facts of one compose file."""

    source: str
    services: dict[str, Service]
    networks: tuple[str, ...]
    host_facing: tuple[str, ...]
    ranks: dict[str, int]
    listen: dict[str, int]
    default_role: str | None = None     # the role of a container the harness adds (an extra worker)
    storage: dict = field(default_factory=dict)
    reset: dict = field(default_factory=dict)
    oom: dict = field(default_factory=dict)    # which roles the oom kind targets, the request that triggers it
    profiles: str = ""                  # the directory fault-profile names are looked up in (absolute)
    suite: str = ""                     # the module of the runner's hooks for this stack (harness/suite.py)

    # ---- the questions kinds and backends ask ---------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.services)

    def role(self, service: str) -> str:
        """The service's role; a service the file does not declare has the block's default_role."""
        if service not in self.services and self.default_role:
            return self.default_role
        return self.service(service).role

    def rank(self, service: str) -> int:
        return self.ranks[self.role(service)]

    def listen_port(self, service: str) -> int:
        """The TCP port a service listens on for its downstream peers (the link faults' destination)."""
        role = self.role(service)
        if role not in self.listen:
            raise TopologyError(f"{self.source}: {BLOCK}.roles.{role}.listen is not set (a link to {service})")
        return self.listen[role]

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise TopologyError(f"{self.source}: no service {name!r}; known: {', '.join(self.services)}") from None

    def networks_of(self, service: str) -> tuple[str, ...]:
        return self.service(service).networks

    def cuttable_networks(self, service: str) -> list[str]:
        """The service's networks a partition may cut (every one but the host-facing)."""
        return [n for n in self.networks_of(service) if n not in self.host_facing]

    def net_admin(self, service: str) -> bool:
        return self.service(service).net_admin

    @property
    def net_admin_services(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services.values() if s.net_admin)

    def health_port(self, service: str) -> int | None:
        """The port of the service's health check; an undeclared service: the first of its role's."""
        if service in self.services:
            return self.services[service].health_port
        role = self.role(service)
        return next((s.health_port for s in self.services.values() if s.role == role and s.health_port), None)

    def health_path(self, service: str) -> str:
        return self.services[service].health_path if service in self.services else "/health"

    @property
    def cuttable(self) -> tuple[str, ...]:
        return tuple(n for n in self.networks if n not in self.host_facing)


def _list_networks(value: Any) -> tuple[str, ...]:
    """A service's networks, list or mapping form; in priority order (highest first) when given."""
    if value is None:
        return ("default",)
    if isinstance(value, list):
        return tuple(str(n) for n in value)
    if isinstance(value, dict):
        prio = {n: ((v or {}).get("priority") or 0) if isinstance(v, dict) else 0 for n, v in value.items()}
        return tuple(sorted(value, key=lambda n: (-prio[n], list(value).index(n))))
    raise TypeError(f"networks must be a list or a mapping, not {type(value).__name__}")


def _int(value: Any, where: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise TopologyError(f"{source}: {where} must be a port number (1..65535), not {value!r}")
    return value


def from_config(config: dict, source: str = "compose config") -> Topology:
    """The topology of a compose model (the YAML loaded, or `compose config --format json`)."""
    if not isinstance(config, dict) or not isinstance(config.get("services"), dict):
        raise TopologyError(f"{source}: no services: mapping")
    block = config.get(BLOCK)
    if not isinstance(block, dict):
        raise TopologyError(f"{source}: no {BLOCK}: block (the harness needs its services' roles and readiness)")
    declared = block.get("services")
    if not isinstance(declared, dict) or not declared:
        raise TopologyError(f"{source}: {BLOCK}.services must map each service to its role")
    roles = block.get("roles") or {}
    if not isinstance(roles, dict):
        raise TopologyError(f"{source}: {BLOCK}.roles must be a mapping")
    services = {}
    for name, spec in declared.items():
        compose = config["services"].get(name)
        if compose is None:
            raise TopologyError(f"{source}: {BLOCK}.services.{name}: no such service in the compose file")
        spec = spec or {}
        role = spec.get("role") or name
        if roles and role not in roles:
            raise TopologyError(f"{source}: {BLOCK}.services.{name}.role {role!r} is not in {BLOCK}.roles")
        health = spec.get("health") or {}
        port = _int(health["port"], f"{BLOCK}.services.{name}.health.port", source) if "port" in health else None
        try:
            nets = _list_networks(compose.get("networks"))
        except TypeError as exc:
            raise TopologyError(f"{source}: services.{name}.networks: {exc}") from None
        services[name] = Service(name=name, role=role, networks=nets, health_port=port,
                                 health_path=str(health.get("path") or "/health"),
                                 net_admin="NET_ADMIN" in (compose.get("cap_add") or []))
    networks = tuple(config.get("networks") or sorted({n for s in services.values() for n in s.networks}))
    host_facing = tuple(block.get("host_facing") or ())
    unknown = [n for n in host_facing if n not in networks]
    if unknown:
        raise TopologyError(f"{source}: {BLOCK}.host_facing names networks the file does not define: {unknown}")
    ranks = {r: int((v or {}).get("rank", 0)) for r, v in roles.items()}
    listen = {r: _int(v["listen"], f"{BLOCK}.roles.{r}.listen", source) for r, v in roles.items() if v and "listen" in v}
    default_role = block.get("default_role")
    if default_role is not None and roles and default_role not in roles:
        raise TopologyError(f"{source}: {BLOCK}.default_role {default_role!r} is not in {BLOCK}.roles")
    return Topology(source=source, services=services, networks=networks, host_facing=host_facing,
                    ranks=ranks or {s.role: 0 for s in services.values()}, listen=listen, default_role=default_role,
                    storage=dict(block.get("storage") or {}), reset=_reset(block.get("reset"), services, source),
                    oom=_oom(block.get("oom"), {s.role for s in services.values()} | set(roles), source),
                    profiles=_profiles(block.get("profiles"), source),
                    suite=str(block.get("suite") or ""))


REQUEST_METHODS = ("POST", "PUT", "DELETE", "GET")


def _request(block: dict, where: str, extra: tuple[str, ...] = ()) -> dict:
    """A declared HTTP request checked: {method (POST by default), path[, body]}."""
    method, path = str(block.get("method") or "POST").upper(), block.get("path")
    if method not in REQUEST_METHODS:
        raise TopologyError(f"{where}.method {method!r} is not one of {', '.join(REQUEST_METHODS)}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise TopologyError(f"{where}.path must be a path starting with '/', not {path!r}")
    known = (*extra, "method", "path", "body")
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise TopologyError(f"{where}: unknown keys {unknown} (known: {', '.join(known)})")
    return {"method": method, "path": path, **({"body": block["body"]} if "body" in block else {})}


def _reset(block: Any, services: dict, source: str) -> dict:
    """x-apiary.reset checked: {service, method, path[, body]}; {} when the block declares none."""
    if not block:
        return {}
    where = f"{source}: {BLOCK}.reset"
    if not isinstance(block, dict):
        raise TopologyError(f"{where} must be a mapping (service, method, path, body)")
    service = block.get("service")
    if service not in services:
        raise TopologyError(f"{where}.service {service!r} is not in {BLOCK}.services")
    if services[service].health_port is None:
        raise TopologyError(f"{where}.service {service!r} has no health.port: the reset goes to that HTTP port")
    return {"service": service, **_request(block, where, ("service",))}


def _profiles(value: Any, source: str) -> str:
    """x-apiary.profiles: a directory relative to the compose file, made absolute; "" when not given."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise TopologyError(f"{source}: {BLOCK}.profiles must be a directory path, not {value!r}")
    path = (Path(source).parent / value).resolve()
    if not path.is_dir():
        raise TopologyError(f"{source}: {BLOCK}.profiles {value!r} is not a directory ({path})")
    return str(path)


def _oom(block: Any, roles: set[str], source: str) -> dict:
    """x-apiary.oom checked: {roles, trigger: {method, path[, body]}}; {} when the block declares none."""
    if not block:
        return {}
    where = f"{source}: {BLOCK}.oom"
    if not isinstance(block, dict) or not isinstance(block.get("trigger"), dict):
        raise TopologyError(f"{where} must be a mapping with roles and a trigger request (method, path, body)")
    unknown = sorted(set(block) - {"roles", "trigger"})
    if unknown:
        raise TopologyError(f"{where}: unknown keys {unknown} (known: roles, trigger)")
    want = block.get("roles")
    if not isinstance(want, list) or not want or not all(isinstance(r, str) for r in want):
        raise TopologyError(f"{where}.roles must be a list of the roles the oom kind may target")
    strangers = sorted(set(want) - roles)
    if strangers:
        raise TopologyError(f"{where}.roles names roles no service has: {strangers}")
    return {"roles": tuple(want), "trigger": _request(block["trigger"], f"{where}.trigger")}


def load(path: Path | str) -> Topology:
    """The topology of a compose file, read as YAML (no compose CLI needed)."""
    import yaml
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read the compose file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: not valid YAML: {exc}") from None
    return from_config(config, str(path))


def from_compose_config(compose_cmd: list[str], path: Path | str, env: dict | None = None,
                        timeout_s: float = 30) -> Topology:
    """The topology as the compose CLI resolves the file (`config --format json`)."""
    cmd = [*compose_cmd, "-f", str(path), "config", "--format", "json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TopologyError(f"{path}: `{' '.join(cmd)}` failed: {exc}") from None
    if proc.returncode != 0:
        raise TopologyError(f"{path}: `{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    try:
        return from_config(json.loads(proc.stdout), str(path))
    except json.JSONDecodeError as exc:
        raise TopologyError(f"{path}: compose config printed no JSON ({exc})") from None
