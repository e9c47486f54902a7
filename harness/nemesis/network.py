"""Network faults: partitions via docker network disconnect/connect (aliases kept), one-way drops and
packet loss via iptables -w inside containers; every fault idempotent, audited and healed by heal()."""
from __future__ import annotations

from typing import Any

from harness.nemesis.audit import FaultLog

try:  # the env engineer's error types; a local stand-in keeps this module importable on its own
    from harness.errors import NemesisError
except ImportError:  # pragma: no cover
    class NemesisError(RuntimeError):  # type: ignore[no-redef]
        """A fault could not be applied."""

CHAIN = "APIARY_NEMESIS"
DEFAULT_NETWORKS = ("control", "hive-a-net", "hive-b-net", "edge")
HOST_FACING = ("edge",)   # never cut by partition(): the harness reaches the stack through it


class NetworkNemesis:
    """partition / isolate / drop (one-way) / loss, and heal everything it did."""

    def __init__(self, cluster: Any, log: FaultLog):
        self.cluster = cluster
        self.log = log
        self._cut: list[tuple[str, str]] = []   # (service, short network) disconnected by us
        self._iptables: set[str] = set()        # services with our chain installed

    # ---- topology -----------------------------------------------------------------------------
    def short_networks(self) -> list[str]:
        names = getattr(self.cluster, "networks", None)
        if isinstance(names, dict):
            return list(names)
        return list(names) if names else list(DEFAULT_NETWORKS)

    def networks_of(self, service: str) -> dict[str, dict]:
        """Short network name -> {ip, aliases} for a service's current attachments."""
        info = self.cluster.inspect(service) or {}
        raw = info.get("networks") or {}
        full_to_short = {}
        for short in self.short_networks():
            try:
                full_to_short[self.cluster.network_name(short)] = short
            except Exception:  # noqa: BLE001 - unknown short name on this backend
                continue
        out = {}
        items = raw.items() if isinstance(raw, dict) else ((n, {}) for n in raw)
        for name, meta in items:
            short = full_to_short.get(name, name)
            meta = meta if isinstance(meta, dict) else {}
            out[short] = {"ip": meta.get("ip") or meta.get("IPAddress") or meta.get("ip_address"),
                          "aliases": meta.get("aliases") or meta.get("Aliases") or []}
        return out

    def shared_networks(self, a: str, b: str) -> list[str]:
        na, nb = self.networks_of(a), self.networks_of(b)
        return [n for n in na if n in nb]

    def ip_of(self, service: str, toward: str | None = None) -> str:
        """IP of `service` on a network it shares with `toward` (or its first network)."""
        nets = self.networks_of(service)
        candidates = self.shared_networks(service, toward) if toward else list(nets)
        for n in candidates:
            if nets.get(n, {}).get("ip"):
                return nets[n]["ip"]
        raise NemesisError(f"no IP for {service}" + (f" on a network shared with {toward}" if toward else "")
                           + f" (networks: {nets})")

    # ---- partitions ----------------------------------------------------------------------------
    def partition(self, a: str, b: str) -> list[str]:
        """Cut every (non host-facing) network shared by a and b by disconnecting b from it; idempotent."""
        def apply() -> list[str]:
            shared = [n for n in self.shared_networks(a, b) if n not in HOST_FACING]
            already = [n for (s, n) in self._cut if s == b]
            if not shared and not already:
                raise NemesisError(f"{a} and {b} share no network to cut")
            for n in shared:
                self.cluster.disconnect(b, n)
                self._cut.append((b, n))
            return shared + already
        return self.log.run("partition", {"a": a, "b": b}, apply)

    def isolate(self, service: str) -> list[str]:
        """Disconnect a service from all its non host-facing networks; idempotent."""
        def apply() -> list[str]:
            nets = [n for n in self.networks_of(service) if n not in HOST_FACING]
            for n in nets:
                self.cluster.disconnect(service, n)
                self._cut.append((service, n))
            return nets
        return self.log.run("isolate", {"service": service}, apply)

    def heal_partitions(self) -> list[tuple[str, str]]:
        """Reconnect everything we disconnected (the cluster keeps the compose aliases)."""
        def apply() -> list[list[str]]:
            done = []
            while self._cut:
                service, net = self._cut.pop()
                if net not in self.networks_of(service):
                    self.cluster.connect(service, net)
                done.append([service, net])
            return done
        if not self._cut:
            return []
        return self.log.run("heal-partitions", {}, apply)

    # ---- iptables -----------------------------------------------------------------------------
    def _exec(self, service: str, cmd: str) -> Any:
        try:
            return self.cluster.exec(service, ["sh", "-c", cmd], user="root")
        except TypeError:
            return self.cluster.exec(service, ["sh", "-c", cmd])

    def _ensure_chain(self, service: str) -> None:
        if service in self._iptables:
            return
        self._exec(service, f"iptables -w -N {CHAIN} 2>/dev/null; "
                            f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}; "
                            f"iptables -w -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -w -I OUTPUT 1 -j {CHAIN}")
        self._iptables.add(service)

    def drop(self, src: str, dst: str) -> str:
        """One-way partition: `dst` drops every packet arriving from `src` (replies dst→src still leave)."""
        def apply() -> str:
            ip = self.ip_of(src, toward=dst)
            self._ensure_chain(dst)
            rule = f"-A {CHAIN} -s {ip} -j DROP"
            self._exec(dst, f"iptables -w -C {rule[3:]} 2>/dev/null || iptables -w {rule}")
            return rule
        return self.log.run("drop", {"src": src, "dst": dst}, apply)

    def loss(self, service: str, probability: float, peer: str | None = None) -> str:
        """Drop a random fraction of packets arriving at `service` (from `peer` only, if given)."""
        if not 0 < probability <= 1:
            raise ValueError("probability must be in (0, 1]")

        def apply() -> str:
            src = f"-s {self.ip_of(peer, toward=service)} " if peer else ""
            self._ensure_chain(service)
            self._exec(service, f"iptables -w -F {CHAIN}")
            rule = f"-A {CHAIN} -p tcp {src}-m statistic --mode random --probability {probability} -j DROP"
            self._exec(service, f"iptables -w {rule}")
            return rule
        return self.log.run("loss", {"service": service, "probability": probability, "peer": peer}, apply)

    def heal_iptables(self) -> list[str]:
        if not self._iptables:
            return []

        def apply() -> list[str]:
            healed = []
            for s in sorted(self._iptables):
                self._exec(s, f"iptables -w -F {CHAIN} 2>/dev/null; true")
                healed.append(s)
            self._iptables.clear()
            return healed
        return self.log.run("heal-iptables", {}, apply)

    def heal(self) -> None:
        """Undo every network fault (partitions and iptables rules); safe to call repeatedly."""
        errors = []
        for fn in (self.heal_iptables, self.heal_partitions):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - heal the rest, report all
                errors.append(repr(exc))
        if errors:
            raise NemesisError("network heal incomplete: " + "; ".join(errors))
