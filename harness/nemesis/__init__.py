"""Nemesis: every fault the suites inject (network, process, rogue peers), audited to one fault log and healed at close."""
from __future__ import annotations

from typing import Any

from harness.history import History
from harness.nemesis.audit import FaultLog
from harness.nemesis.network import NetworkNemesis
from harness.nemesis.process import ProcessNemesis


class Nemesis:
    """`net` (partition/drop/loss), `proc` (kill/pause/restart/faults), `rogue` (malformed peers)."""

    def __init__(self, cluster: Any, run_id: str = "", history: History | None = None):
        from harness.rogue import RoguePeer
        self.log = FaultLog(history)
        self.net = NetworkNemesis(cluster, self.log)
        self.proc = ProcessNemesis(cluster, self.log)
        self.rogue = RoguePeer(cluster, self.log, run_id=run_id)

    def heal_all(self) -> list[str]:
        """Undo every fault; returns the errors (empty when all healed)."""
        errors = []
        try:
            self.net.heal()
        except Exception as exc:  # noqa: BLE001 - keep healing
            errors.append(repr(exc))
        errors += self.proc.heal()
        return errors

    def close(self) -> list[str]:
        errors = self.heal_all()
        self.rogue.close()
        return errors
