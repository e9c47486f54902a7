"""The example's stack: the kit's ComposeStack of docker-compose.yml with each member's published client port
fixed per start attempt ($APIARY_HOST_PORT_ETCDn), so a killed or restarted member comes back on the same
host port and the clients of a workload running through a soak reach it again (an ephemeral port is
re-drawn on every start)."""
from __future__ import annotations

from pathlib import Path

from harness.stack.compose import ComposeStack
from harness.stack.ports import free_ports

COMPOSE_FILE = Path(__file__).resolve().parent / "docker-compose.yml"


class EtcdStack(ComposeStack):
    """ComposeStack of the example's file whose members keep their client port across restarts."""

    def __init__(self, run_id: str, compose_file: str | Path = COMPOSE_FILE, **kwargs):
        super().__init__(run_id, compose_file, **kwargs)
        self.pinned: dict[str, int] = {}

    def prepare_attempt(self) -> None:
        """A free host port per member, picked again for each start attempt."""
        names = [f"APIARY_HOST_PORT_{s.upper()}" for s in self.services]
        self.pinned = dict(zip(names, free_ports(len(names))))

    def compose_env(self) -> dict:
        """ComposeStack's environment plus the pinned ports."""
        return {**ComposeStack.compose_env(self), **{k: str(v) for k, v in self.pinned.items()}}
