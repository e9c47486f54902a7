"""The one fault protocol: a FaultKind applies a fault to a target of a stack and returns an Active fault
that can prove it is in effect (verify) and undo itself (heal, idempotent). Kinds register by name.

Targets are strings: a service ("hive-a"), a link between two services ("orchestrator|hive-a") or a
service against all its peers ("hive-a|*"). The stack's topology (services, networks, NET_ADMIN) comes
from the compose file's x-apiary: block (harness/stack, topology_of); live addresses from the stack's inspect().
"""
from __future__ import annotations

import abc

import time
from typing import Any, Callable, Protocol, runtime_checkable

from harness.errors import NemesisError
from harness.stack import topology_of

CHAIN = "APIARY_NEMESIS"         # the one iptables chain every network fault writes its rules into
DOWN = ("exited", "dead", "created")   # container states of a service that is not running
POLL_S = 0.05                    # poll interval of every verify (below the house limit of 0.2 s)


@runtime_checkable
class Active(Protocol):
    """An applied fault."""

    kind: str
    target: str
    params: dict

    def verify(self) -> dict:
        """{"held": bool, "evidence": <jsonable>}: proves the fault is in effect now."""
        ...

    def heal(self) -> list[str]:
        """Undo the fault (idempotent); returns what could not be undone ([] = fully healed)."""
        ...


class ActiveFault(abc.ABC):
    """Base of every kind's active fault: verify() never raises, heal() runs undo() until it is clean."""

    def __init__(self, kind: str, target: str, params: dict, stack: Any):
        self.kind = kind
        self.target = target
        self.params = dict(params)
        self.stack = stack
        self.applied: dict = {}          # what apply observed (evidence that belongs to the apply)
        self._healed = False

    @abc.abstractmethod
    def check(self) -> tuple[bool, Any]:
        """(held, evidence) of this fault right now."""

    @abc.abstractmethod
    def undo(self) -> list[str]:
        """Undo once; returns what could not be undone."""

    def verify(self) -> dict:
        """{"held", "evidence"}: an exception while checking counts as not held, with the error as evidence."""
        try:
            held, evidence = self.check()
        except Exception as exc:  # noqa: BLE001 - a check that cannot run proves nothing
            return {"held": False, "evidence": {"error": repr(exc)[:500]}}
        return {"held": bool(held), "evidence": evidence}

    def heal(self) -> list[str]:
        """Idempotent: once fully healed, later calls do nothing and return []."""
        if self._healed:
            return []
        try:
            left = list(self.undo())
        except Exception as exc:  # noqa: BLE001 - reported, a later heal tries again
            left = [f"{self.kind} {self.target}: {exc!r}"[:500]]
        self._healed = not left
        return left

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.target} {self.params}>"


class FaultKind(abc.ABC):
    """Base class of a fault kind: `defaults` are its params; subclasses implement targets() and apply()."""

    name = ""
    defaults: dict = {}

    @abc.abstractmethod
    def targets(self, stack: Any) -> list[str]:
        """Which targets this kind accepts on this stack."""

    @abc.abstractmethod
    def apply(self, stack: Any, target: str, **params: Any) -> Active:
        """Apply the fault and return it active; raises NemesisError on failure."""

    def validate(self, params: dict) -> None:
        """Kind-specific checks of merged params; raise NemesisError naming the bad param."""

    def check_params(self, params: dict) -> dict:
        """Defaults merged with params; NemesisError naming an unknown or invalid param."""
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise NemesisError(f"{self.name}: unknown param {unknown[0]!r}; allowed: {', '.join(self.defaults) or 'none'}")
        merged = {**self.defaults, **params}
        self.validate(merged)
        return merged

    def check_target(self, stack: Any, target: str) -> None:
        """NemesisError unless the target is one this kind accepts on this stack."""
        allowed = self.targets(stack)
        if target not in allowed:
            raise NemesisError(f"{self.name}: target {target!r} not accepted on this stack; "
                               f"allowed: {', '.join(allowed) or 'none (backend cannot inject it)'}")

    def claims(self, stack: Any, target: str, params: dict) -> list[tuple[str, str]]:
        """(service, lane) pairs the fault holds while active: "proc" (its process or volume), "cut" (its
        network attachments), "rule" (an iptables rule in it), "block" (a rule that stops a link's traffic),
        "traffic" (packets its verify needs to flow there), "quality" (a steered link), "probe" (verify execs
        in it); conflicts() says which pairs cannot overlap."""
        return [(target, "proc")]


REGISTRY: dict[str, FaultKind] = {}


def register(cls: type[FaultKind]) -> type[FaultKind]:
    """Class decorator: register one instance of a kind under its name."""
    if not cls.name:
        raise NemesisError(f"fault kind {cls.__name__} has no name")
    REGISTRY[cls.name] = cls()
    return cls


def lookup(name: str) -> FaultKind:
    """The registered kind called `name`; NemesisError naming the known kinds otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise NemesisError(f"unknown fault kind {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def heal_all(actives: list[Active]) -> list[str]:
    """Heal every active fault (newest first); returns what could not be undone, across all."""
    left: list[str] = []
    for active in reversed(list(actives)):
        try:
            left += active.heal()
        except Exception as exc:  # noqa: BLE001 - heal the rest, report all
            left.append(f"{getattr(active, 'kind', '?')} {getattr(active, 'target', '?')}: {exc!r}")
    return left


def conflicts(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Two claims on the same service conflict when either is "proc" (a stopped or frozen container cannot
    exec, and loses its iptables rules), both are "cut", or one is "cut" and the other "rule" or "block" (a
    rule's traffic would cross the cut network), or one is "quality" (a link steered through the proxy,
    measured by its verify) and the other "cut", "rule" or "block" (no shared network to steer over, or drops
    that spoil the measurement: both seen in the 30-minute soak), or one is "traffic" (a loss's verify makes
    packets flow there) and the other "block" (a one-way partition there lets none arrive: seen in a CI soak,
    a loss on worker-b2 saw 2 packets in 3 s under hive-b|worker-b2 b->a). A cut of a peer from another
    network leaves the loss's link alone; a cut of the loss's own target conflicts with its "rule"."""
    if a[0] != b[0]:
        return False
    lanes = {a[1], b[1]}
    return "proc" in lanes or lanes in CONFLICTING


CONFLICTING = ({"cut"}, {"cut", "rule"}, {"cut", "block"}, {"quality", "cut"}, {"quality", "rule"}, {"quality", "block"},
               {"traffic", "block"})


# ---- topology helpers shared by the kinds ------------------------------------------------------------
def is_docker(stack: Any) -> bool:
    """True for container backends (network, storage and OOM faults need containers)."""
    return getattr(stack, "backend", "docker") == "docker"


def services_of(stack: Any) -> list[str]:
    return list(getattr(stack, "services", None) or topology_of(stack).names)


def role(service: str, stack: Any) -> str:
    """The service's role in the topology (x-apiary.services.<name>.role)."""
    return topology_of(stack).role(service)


def rank(service: str, stack: Any) -> int:
    """The rank of the service's role: a link fault moves the lower-ranked side."""
    return topology_of(stack).rank(service)


def listen_port(service: str, stack: Any) -> int:
    return topology_of(stack).listen_port(service)


def host_facing(stack: Any) -> tuple[str, ...]:
    """Networks never cut: the harness reaches the stack through them."""
    return topology_of(stack).host_facing


def net_admin(stack: Any, service: str) -> bool:
    """The service's container may change its own iptables rules."""
    t = topology_of(stack)
    return service in t.services and t.net_admin(service)


def static_networks(service: str, stack: Any) -> list[str]:
    """Non host-facing networks of a service in the compose topology."""
    t = topology_of(stack)
    return t.cuttable_networks(service) if service in t.services else []


def peers(stack: Any, service: str) -> list[str]:
    """Services sharing a non host-facing network with `service`, the highest rank first."""
    mine = set(static_networks(service, stack))
    found = [s for s in services_of(stack) if s != service and mine & set(static_networks(s, stack))]
    return sorted(found, key=lambda s: (-rank(s, stack), s))


def downstream(stack: Any, service: str) -> list[str]:
    """Peers one rank below (a hive's workers, the orchestrator's hives): what a graceful stop may cascade to."""
    mine = rank(service, stack)
    return [s for s in peers(stack, service) if rank(s, stack) == mine - 1]


def parse_target(stack: Any, target: str) -> tuple[str, str | None]:
    """(a, b) of "a|b", (a, "*") of "a|*", (a, None) of a service; NemesisError for unknown services."""
    parts = str(target).split("|")
    if len(parts) > 2 or not all(parts):
        raise NemesisError(f"bad target {target!r}: want 'service', 'a|b' or 'a|*'")
    known = services_of(stack)
    for p in parts:
        if p != "*" and p not in known:
            raise NemesisError(f"unknown service {p!r} in target {target!r}; known: {', '.join(known)}")
    if parts[0] == "*" or (len(parts) == 2 and parts[0] == parts[1]):
        raise NemesisError(f"bad target {target!r}: '*' only as the second part, and two different services")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def live_networks(stack: Any, service: str) -> dict[str, dict]:
    """Short network name -> {ip, aliases, gateway} of the service's current attachments (one inspect)."""
    full_to_short = {}
    for short in topology_of(stack).networks:
        try:
            full_to_short[stack.network_name(short)] = short
        except Exception:  # noqa: BLE001 - a backend without that network
            continue
    raw = (stack.inspect(service) or {}).get("networks") or {}
    return {full_to_short.get(name, name): {"ip": (meta or {}).get("ip"), "aliases": (meta or {}).get("aliases") or [],
                                            "gateway": (meta or {}).get("gateway")}
            for name, meta in raw.items()}


def run(stack: Any, service: str, cmd: list[str], user: str = "root") -> tuple[int | None, str]:
    """(exit code, output) of a command in a service's container; (None, error) when exec itself failed."""
    try:
        result = stack.exec(service, cmd, user=user, check=False)
    except Exception as exc:  # noqa: BLE001 - paused or gone containers cannot exec
        return None, repr(exc)[:500]
    return result.exit_code, (result.output or b"").decode("utf-8", "replace")


def poll(fn: Callable[[], tuple[bool, Any]], timeout_s: float, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic, interval_s: float = POLL_S) -> tuple[bool, Any]:
    """Call fn() every interval_s (at most 0.2 s) until it returns (True, evidence) or the deadline passes;
    returns the last result."""
    deadline = clock() + timeout_s
    while True:
        ok, evidence = fn()
        if ok or clock() >= deadline:
            return ok, evidence
        sleep(min(interval_s, 0.2, max(0.0, deadline - clock())))


def check_number(kind: str, params: dict, name: str, lo: float, hi: float) -> None:
    """NemesisError naming `name` unless params[name] is a number in lo..hi."""
    v = params[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise NemesisError(f"{kind}: bad param {name!r} {v!r}; want a number in {lo}..{hi}")


def state_of(stack: Any, service: str) -> dict:
    """The jsonable container state fields verify() reports."""
    st = stack.inspect(service) or {}
    return {k: st.get(k) for k in ("status", "running", "paused", "exit_code", "oom_killed", "started_at")}


def require_running(stack: Any, kind: str, target: str) -> dict:
    """The target's state; NemesisError unless it is running (a paused or stopped target is busy)."""
    st = state_of(stack, target)
    if st.get("status") != "running":
        raise NemesisError(f"{kind}: {target} is {st.get('status') or 'missing'}, not running")
    return st


def ensure_running(stack: Any, target: str) -> list[str]:
    """Start the target unless it runs (or is paused: that is another fault's to undo); [] when it runs."""
    st = state_of(stack, target)
    if st.get("status") in ("running", "paused"):
        return []
    try:
        stack.start(target)
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        return [f"start {target}: {exc!r}"[:300]]
    after = state_of(stack, target).get("status")
    return [] if after == "running" else [f"{target} is {after} after start"]


def load_kinds(package: str = "harness.nemesis") -> list[str]:
    """Import every kinds_*.py module of the package, in name order; each registers its kinds as it loads, so a
    new fault kind is one new file. Returns the modules imported."""
    import importlib
    import pkgutil
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("kinds_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


# The kinds register themselves on import (they import this module's names, defined above).
load_kinds()
