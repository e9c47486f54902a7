"""Intruders: rogue hives that hold no CURVE key or an unlisted one, each registering an idle ready worker
(from the control network or from the host through the published ROUTER port); what each heard and what the
orchestrator counted. Evidence is the intruder's own view (replies, handshake events) plus /v1/workers and
/metrics, so a stack that admitted an intruder fails here however it reports itself."""
from __future__ import annotations

import uuid
from typing import Any

# the reasons a refusal of each intruder may be counted under (a plain peer that sees the CURVE greeting
# first hangs up: "aborted"); client: the run's own key, for self-tests
REASON = {"none": ("no-key", "aborted"), "stranger": ("unknown-key",), "client": ()}
WHERE = {"the control network": False, "the host": True}
REFUSALS = "apiary_curve_refusals_total"


class Intruders:
    """Rogue hives played one after another through the world's rogue peer; checks over what they saw."""

    def __init__(self, world: Any, model: str = "tinyllama"):
        self.world, self.model = world, model
        self.results: list[dict] = []

    def impersonate(self, key: str, where: str, listen_ms: int = 3000) -> dict:
        """One intruder (key: none, stranger or client) registers and listens; records what it got and the count."""
        if key not in REASON or where not in WHERE:
            raise ValueError(f"intruder key {key!r} / place {where!r}: use {sorted(REASON)} / {sorted(WHERE)}")
        reasons = REASON[key]
        before = self.refusals(reasons)
        peer_id = f"intruder-{key}-{uuid.uuid4().hex[:6]}"
        got = self.world.nemesis.rogue.impersonate_hive(peer_id, self.model, key=key, on_host=WHERE[where],
                                                        listen_ms=listen_ms)
        after = self.refusals(reasons)
        result = {"peer": peer_id, "key": key, "where": where, "reason": "|".join(reasons), "refusals": after - before,
                  "requests": [r for r in got["replies"] if r.get("command") == "REQUEST"],
                  "replies": len(got["replies"]), "handshakes": got["handshakes"]}
        self.results.append(result)
        return result

    def refusals(self, reasons: tuple[str, ...]) -> float:
        """The orchestrator's ROUTER refusals counted under any of reasons."""
        return sum(self.world.metric("orchestrator", REFUSALS, link="router", reason=r) for r in reasons)

    def admitted(self) -> list[str]:
        """Intruders that completed a handshake, heard anything, got a REQUEST, or are listed in /v1/workers."""
        listed = {w["id"].rsplit("-w1", 1)[0] for w in self.world.workers_view().get("workers", [])}
        bad = []
        for r in self.results:
            why = [w for w, hit in (("handshake succeeded", "succeeded" in r["handshakes"]),
                                    (f"{len(r['requests'])} REQUESTs", r["requests"]),
                                    (f"{r['replies']} replies", r["replies"]),
                                    ("listed in /v1/workers", r["peer"] in listed)) if hit]
            if why:
                bad.append(f"{r['peer']} from {r['where']}: {', '.join(why)}")
        return bad

    def uncounted(self) -> list[str]:
        """Intruders whose refusal the orchestrator did not count under their reason."""
        return [f"{r['peer']} ({r['key']} key, from {r['where']}): {REFUSALS}{{reason={r['reason']}}} rose by "
                f"{r['refusals']:g}" for r in self.results if not r["reason"] or r["refusals"] < 1]
