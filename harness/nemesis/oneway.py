"""One-way link faults with iptables inside a container (NET_ADMIN): drop what a service SENDS to a
peer (its OUTPUT to the peer's IP), in a chain of our own so the other engineer's chain is untouched."""
from __future__ import annotations

from typing import Any

from harness.nemesis.audit import FaultLog

CHAIN = "APIARY_CHAOS"


class OneWayNemesis:
    """drop_outgoing(service, peer): packets service -> peer are dropped; peer -> service still flow."""

    def __init__(self, cluster: Any, net: Any, log: FaultLog):
        self.cluster = cluster
        self.net = net          # NetworkNemesis: ip_of()
        self.log = log
        self._touched: set[str] = set()

    def _sh(self, service: str, cmd: str) -> Any:
        return self.cluster.exec(service, ["sh", "-c", cmd], user="root")

    def drop_outgoing(self, service: str, peer: str) -> str:
        def apply() -> str:
            ip = self.net.ip_of(peer, toward=service)
            self._sh(service, f"iptables -w -N {CHAIN} 2>/dev/null; "
                              f"iptables -w -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -w -I OUTPUT 1 -j {CHAIN}")
            self._touched.add(service)
            rule = f"{CHAIN} -d {ip} -j DROP"
            self._sh(service, f"iptables -w -C {rule} 2>/dev/null || iptables -w -A {rule}")
            return rule
        return self.log.run("drop-outgoing", {"service": service, "peer": peer}, apply)

    def heal(self) -> list[str]:
        errors = []
        for s in sorted(self._touched):
            try:
                self.log.run("heal-drop-outgoing", {"service": s},
                             lambda s=s: self._sh(s, f"iptables -w -F {CHAIN} 2>/dev/null; true").exit_code)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"heal {s}: {exc!r}")
        self._touched.clear()
        return errors
