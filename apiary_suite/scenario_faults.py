"""Nemesis, the Apiary suite's per-scenario fault facade: every fault a scenario injects, recorded in one fault
history (the world's faults.jsonl) and healed at close. Protocol faults (registry kinds: partition, loss,
storage, extra workers...) go through `faults` (a FaultBook); `net` is the step library's network verbs over
it; `proc` the process verbs and service fault knobs; `rogue` malformed peers. The kit's fault protocol, kinds,
player and generator are harness/nemesis/ (its package imports nothing, so the kit never runs this)."""
from __future__ import annotations

from typing import Any

from harness.history import History
from harness.nemesis.audit import FaultBook, FaultLog
from apiary_suite.network_faults import NetworkNemesis
from apiary_suite.process_faults import ProcessNemesis


class Nemesis:
    """`faults` (protocol faults), `net` (partition/drop/loss), `proc` (kill/pause/restart/knobs), `rogue`."""

    def __init__(self, cluster: Any, run_id: str = "", history: History | None = None):
        from apiary_suite.rogue import RoguePeer
        self.log = FaultLog(history)
        self.faults = FaultBook(cluster, self.log)
        self.net = NetworkNemesis(self.faults)
        self.proc = ProcessNemesis(cluster, self.log)
        self.rogue = RoguePeer(cluster, self.log, run_id=run_id)

    def heal_all(self) -> list[str]:
        """Heal every protocol fault still active (each once, newest first), then the process faults;
        returns what could not be undone (empty when all healed)."""
        errors = self.faults.heal()
        errors += self.proc.heal()
        return errors

    def close(self) -> list[str]:
        errors = self.heal_all()
        self.rogue.close()
        return errors
