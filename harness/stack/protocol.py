"""The typed Stack: what the kit (fault kinds, player, steps, bundles) may ask of a running stack. Two
implementations today: apiary_suite.cluster.Cluster (compose + the docker SDK) and apiary_suite.local.LocalCluster
(local processes; a network call there raises NemesisError naming the backend). Kinds that need
containers (networks, storage, OOM) check `backend == "docker"` and ask for a ContainerStack."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from harness.stack.topology import Topology


@runtime_checkable
class Stack(Protocol):
    """A running stack of services: lifecycle, state and a shell per service."""

    backend: str                    # "docker" or "local"
    project: str                    # the name every resource of this stack carries
    services: list[str]
    topology: Topology

    def inspect(self, service: str) -> dict:
        """{status, running, paused, exit_code, oom_killed, networks, ...} of one service now."""
        ...

    def kill(self, service: str, signal: str = "SIGKILL") -> None: ...

    def pause(self, service: str) -> None: ...

    def unpause(self, service: str) -> None: ...

    def stop(self, service: str, timeout_s: int = 10) -> None: ...

    def start(self, service: str) -> None: ...

    def restart(self, service: str, timeout_s: int = 10) -> None: ...

    def exec(self, service: str, cmd: Any, user: str = "root", check: bool = True) -> Any:
        """Run a command in the service; .exit_code and .output (bytes) of it."""
        ...

    def logs(self, service: str, since: float | None = None) -> str: ...

    def http_url(self, service: str) -> str:
        """The base URL the harness reaches the service's readiness endpoint at."""
        ...

    def heal(self) -> list[str]:
        """Undo every fault the stack can see (unpause, start, reconnect, flush rules); what was healed."""
        ...

    def down(self) -> list[str]:
        """Stop and remove everything this stack started; what could not be removed."""
        ...


@runtime_checkable
class ContainerStack(Stack, Protocol):
    """A stack of containers on networks the harness may cut."""

    def network_name(self, short: str) -> str: ...

    def connect(self, service: str, network: str) -> None: ...

    def disconnect(self, service: str, network: str) -> None: ...

    def container(self, service: str) -> Any: ...

    def container_id(self, service: str) -> str: ...


def missing(cls: type, proto: type) -> list[str]:
    """The members of a Protocol a class lacks (methods on the class; attributes in its annotations or
    set by its __init__, read from the source since no instance is made)."""
    import inspect
    wanted = [m for m in dir(proto) if not m.startswith("_") and m not in ("mro",)]
    wanted += [a for c in proto.__mro__ if c is not object for a in getattr(c, "__annotations__", {})]
    init_src = ""
    for c in cls.__mro__:
        if "__init__" in vars(c):
            try:
                init_src += inspect.getsource(vars(c)["__init__"])
            except (OSError, TypeError):
                pass
    return sorted({m for m in wanted if not hasattr(cls, m) and f"self.{m} =" not in init_src
                   and f"self.{m}," not in init_src})
