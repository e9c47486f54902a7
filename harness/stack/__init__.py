"""The kit's view of a stack: its topology, read from a compose file and its `x-apiary:` block
(harness/stack/topology.py). `topology_of(stack)` is the one way a fault kind or a backend asks for it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.stack.topology import Service, Topology, TopologyError, from_compose_config, from_config, load

COMPOSE_ENV = "APIARY_COMPOSE_FILE"       # the compose file of the stack under test (the runner's --compose)
DEFAULT_COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.integration.yml"
_loaded: dict[str, Topology] = {}

__all__ = ["Service", "Topology", "TopologyError", "compose_file", "default_topology", "from_compose_config",
           "from_config", "load", "topology_of"]


def compose_file() -> Path:
    """The stack's compose file: $APIARY_COMPOSE_FILE, else the repository's docker-compose.integration.yml."""
    return Path(os.environ.get(COMPOSE_ENV) or DEFAULT_COMPOSE).resolve()


def default_topology() -> Topology:
    """The topology of compose_file(), read once per file."""
    path = str(compose_file())
    if path not in _loaded:
        _loaded[path] = load(path)
    return _loaded[path]


def topology_of(stack: Any = None) -> Topology:
    """The stack's own topology (its `topology` attribute) or, for a stack without one, the default."""
    own = getattr(stack, "topology", None)
    return own if isinstance(own, Topology) else default_topology()
