"""Compound actions of the link-quality scenarios (features/netquality.feature): degrade a link with a
quality kind (harness/nemesis/kinds_quality.py) through the scenario's FaultBook, time completions per
hive side by side, and check the losses the degradation caused. Every wait is scaled."""
from __future__ import annotations

import os
import statistics
import time
from typing import Any


def heartbeat_expiry_s() -> float:
    """The stack's heartbeat expiry: interval x liveness, from the variables compose passes on (its defaults)."""
    return float(os.environ.get("APIARY_HEARTBEAT_INTERVAL_S", 0.2)) * int(os.environ.get("APIARY_HEARTBEAT_LIVENESS", 4))


class NetQuality:
    """One scenario's link degradation and its measurements."""

    def __init__(self, world: Any):
        self.w = world
        self.faults = world.nemesis.faults
        self.fault: Any = None
        self.mark = 0
        self.toxics_at = 0.0         # epoch when the toxics went onto the steered link
        self.baseline: dict[str, float] = {}

    @classmethod
    def of(cls, world: Any) -> "NetQuality":
        if "netquality" not in world.vars:
            world.vars["netquality"] = cls(world)
        return world.vars["netquality"]

    # ---- the fault --------------------------------------------------------------------------------
    def steer(self, target: str) -> Any:
        """Steer the link through the proxy now (its connection moves before the scenario measures);
        unsteered when the scenario closes."""
        from harness.nemesis.steering import steer    # late: the nemesis protocol registers the kinds
        steering = steer(self.w.cluster, target)
        self.w.on_close(steering.unsteer)
        return steering

    def degrade(self, kind: str, target: str, **params: Any) -> Any:
        """Apply a quality kind (verify runs in the background); remembers when its toxics went on."""
        self.mark = self.w.events.mark()
        self.fault = self.faults.apply(kind, target, **params)
        self.toxics_at = self.fault.applied["toxics_at"]
        return self.fault

    def verified(self, timeout_s: float) -> dict:
        """The fault's verify() verdict; AssertionError with its evidence unless it held."""
        verdict = self.faults.wait_verified(self.fault, self.w.scaled(timeout_s))
        assert verdict is not None, f"{self.fault.kind} {self.fault.target}: verify did not finish within {timeout_s}s"
        assert verdict["held"], f"{self.fault.kind} {self.fault.target} not in effect: {verdict['evidence']}"
        return verdict

    def heal(self) -> None:
        left = self.faults.heal([self.fault])
        assert not left, f"heal left: {left}"

    # ---- observations ------------------------------------------------------------------------------
    def losses(self) -> list[dict]:
        """hive.lost and worker.lost events since the fault was applied."""
        return [e for topic in ("hive.lost", "worker.lost") for e in self.w.events.matching(topic, since=self.mark)]

    def lost_after_toxics(self, peer: str, within_expiry_s: float, topic: str = "hive.lost", field: str = "hive_id") -> float:
        """Seconds from the toxics going on to `topic` for the peer; AssertionError unless it came by expiry + the limit."""
        expiry = heartbeat_expiry_s()
        event = self.w.wait_event(topic, expiry + within_expiry_s + 1.0, since=self.mark, **{field: peer})
        after = event["_arrived"] - self.toxics_at
        assert after <= expiry + self.w.scaled(within_expiry_s), (
            f"{topic} for {peer} {after:.3f}s after the {self.fault.kind} began: more than {within_expiry_s}s past "
            f"the {expiry:.2f}s expiry")
        return after

    def job_times(self, jobs: int, tokens: int, rounds: int = 4, per_hive: int = 3) -> dict[str, float]:
        """Median client latency (s) of completions per hive (from job.completed events), concurrent batches
        of `jobs` until every hive served `per_hive` (at most `rounds` batches)."""
        times: dict[str, list[float]] = {}
        for r in range(rounds):
            res = self.w.client.run_many([dict(prompt=f"nq-{r}-{i}", tenant="tenant-b", max_tokens=tokens, seed=i)
                                          for i in range(jobs)], max_workers=jobs)
            bad = [x.value() for x in res if not x.ok]
            assert not bad, f"completions failed under the degraded link: {bad[:3]}"
            ids = {x.job_id: x.latency for x in res}
            done = {e["job_id"]: e.get("hive_id") for e in self.w.events.matching("job.completed")
                    if e.get("job_id") in ids}
            deadline = time.monotonic() + self.w.scaled(5)
            while len(done) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
                done = {e["job_id"]: e.get("hive_id") for e in self.w.events.matching("job.completed")
                        if e.get("job_id") in ids}
            for job_id, hive in done.items():
                times.setdefault(hive, []).append(ids[job_id])
            if len(times) >= 2 and all(len(v) >= per_hive for v in times.values()):
                break
        return {h: statistics.median(v) for h, v in times.items()}

    def slower_by(self, hive: str, other: str, want_s: float, jobs: int, tokens: int) -> dict:
        """Completions on `hive` are slower than on `other` (same batches) by want_s (-30 % .. +50 % + 50 ms)."""
        times = self.job_times(jobs, tokens)
        assert hive in times and other in times, f"completions not served by both {hive} and {other}: {times}"
        added = times[hive] - times[other]
        assert 0.7 * want_s <= added <= 1.5 * want_s + 0.05, (
            f"completions on {hive} slower by {added * 1000:.0f} ms than on {other}, want about {want_s * 1000:.0f} ms "
            f"(medians: {times})")
        return {"added_s": added, "medians": times}

    def as_fast(self, hive: str, other: str, jobs: int, tokens: int, slack_s: float) -> dict:
        """Completions on `hive` take about as long as on `other` (within slack_s)."""
        times = self.job_times(jobs, tokens)
        assert hive in times and other in times, f"completions not served by both {hive} and {other}: {times}"
        assert abs(times[hive] - times[other]) <= slack_s, f"{hive} vs {other} medians differ: {times}"
        return times

    def reset_outcome(self) -> dict:
        """How the streams of the scenario ended under reset_peer, and the service links the proxy accepted."""
        from harness.nemesis.steering import server
        done = [c for c in self.w.client.completions if c.stream]
        accepted = server().call(lambda: self.fault.steering.proxy.accepted)
        return {"service_links_accepted": accepted, "streams": len(done),
                "exact": sum(1 for c in done if c.ok), "explicit_error": sum(1 for c in done if c.error),
                "errors": sorted({(c.error or {}).get("code", "") for c in done if c.error}),
                "redispatched": len(self.w.events.matching("job.redispatched", since=self.mark)),
                "hive_lost": len(self.w.events.matching("hive.lost", since=self.mark))}
