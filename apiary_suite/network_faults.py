"""Network fault verbs of the step library, applied as registry kinds through the scenario's FaultBook:
partition (both ways: docker network disconnect), drop (one way: an iptables DROP in the one chain
APIARY_NEMESIS) and loss (random inbound TCP drops); heal() undoes exactly the faults applied here."""
from __future__ import annotations

from typing import Any

from harness.errors import NemesisError
from harness.nemesis.audit import FaultBook


class NetworkNemesis:
    """partition / isolate / drop / loss as protocol faults, healed together by heal()."""

    def __init__(self, book: FaultBook):
        self.book = book
        self.applied: list[Any] = []      # active faults applied through this object, oldest first

    def _apply(self, kind: str, target: str, **params: Any) -> Any:
        fault = self.book.apply(kind, target, **params)
        self.applied.append(fault)
        return fault

    def partition(self, a: str, b: str) -> Any:
        """Cut a and b apart both ways (the lower role of the two is disconnected from their shared networks)."""
        return self._apply("partition", f"{a}|{b}")

    def isolate(self, service: str) -> Any:
        """Disconnect a service from every network it shares with its peers (not the host-facing one)."""
        return self._apply("partition", f"{service}|*")

    def drop(self, src: str, dst: str) -> Any:
        """One way: every packet src sends to dst is dropped (replies dst -> src still flow)."""
        return self._apply("partition", f"{src}|{dst}", direction="a->b")

    def loss(self, service: str, probability: float, peer: str | None = None) -> Any:
        """Drop a random fraction (0 < probability <= 1) of the TCP packets arriving at `service`
        (from `peer` only, if given)."""
        if not 0 < probability <= 1:
            raise NemesisError(f"loss: probability must be in (0, 1], not {probability!r}")
        return self._apply("loss", service, percent=round(probability * 100, 4), peer=peer)

    def heal(self) -> None:
        """Heal every network fault applied here (each once); NemesisError listing what stayed broken."""
        left = self.book.heal(self.applied)
        self.applied = [f for f in self.applied if self.book.is_active(f)]
        if left:
            raise NemesisError("network heal incomplete: " + "; ".join(left))
