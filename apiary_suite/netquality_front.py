"""Toxics on the stack's host-loopback paths (features/netquality.client.feature): a proxy of the harness's
ToxiServer (harness/nemesis/steering.server) listening on 127.0.0.1 in front of a port the stack publishes
there - the client -> HTTP API path and the event PUB link. No steering: the harness is the client, so it
simply connects to the proxy. Every wait is scaled."""
from __future__ import annotations

import statistics
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from apiary_suite.client import ApiClient
from apiary_suite.events import EventSubscriber, EventTimeout, find_gaps
from apiary_suite.stackops import ORCHESTRATOR_PORTS
import harness.nemesis.protocol  # noqa: F401 - first: it registers the kinds that import steering
from harness.nemesis.steering import server
from harness.toxiproxy import make_toxic
from services.protocol import generate_text, generate_token


class Front:
    """One proxy on host loopback in front of one of the stack's published URLs; closed with the scenario."""

    def __init__(self, world: Any, name: str, url: str):
        parts = urlsplit(url)
        self.scheme, self.w = parts.scheme, world
        srv = server()
        self.proxy = srv.call(srv.create({"name": f"{world.run_id or 'run'}:{name}:{id(self):x}", "listen": "127.0.0.1:0",
                                          "upstream": f"{parts.hostname}:{parts.port}"}))
        world.on_close(self.close)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.proxy.listen}"

    def add(self, toxic_type: str, stream: str, **attributes: Any) -> float:
        """Put a toxic on the proxy (its live links too); the epoch it went on."""
        body = {"name": f"{toxic_type}_{stream}", "type": toxic_type, "stream": stream, "attributes": attributes}
        server().call(lambda: self.proxy.add_toxic(make_toxic(body)))
        return time.time()

    def carried(self) -> dict[str, int]:
        """Bytes per stream the proxy passed on (closed and live links)."""
        def count() -> dict[str, int]:
            out = dict(self.proxy.carried)
            for link in self.proxy.links:
                for d, n in link.to_json()["bytes"].items():
                    out[d] = out.get(d, 0) + n
            return out
        return server().call(count)

    def close(self) -> None:
        srv = server()
        if self.proxy.name in srv.proxies:
            srv.call(srv.delete(self.proxy.name))


def stream_side_by_side(world: Any, rate_kb_s: float, tokens: int, deadline_s: float) -> dict:
    """The same streamed completion twice at once, directly and through a proxy capping the client's
    downstream at rate_kb_s; both Completions, the proxy's byte count and the cap."""
    front = Front(world, "http", world.cluster.api_url)
    front.add("bandwidth", "downstream", rate=rate_kb_s)
    capped = ApiClient(front.url, world.cluster.api_keys, world.history, timeout_s=deadline_s + 5)
    world.on_close(capped.close)
    spec = dict(tenant="tenant-b", max_tokens=tokens, stream=True, headers={"X-Request-Timeout": f"{deadline_s:g}"})
    out: dict = {}
    threads = [threading.Thread(target=lambda k=k, c=c, p=p: out.__setitem__(k, c.complete(prompt=p, seed=7, **spec)))
               for k, c, p in (("direct", world.client, "nq-direct"), ("capped", capped, "nq-capped"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(world.scaled(deadline_s + 10))
    assert set(out) == {"direct", "capped"}, f"streams did not return within {deadline_s + 10}s: {sorted(out)}"
    return {**out, "bytes": front.carried().get("downstream", 0), "rate_kb_s": rate_kb_s, "deadline_s": deadline_s}


def stream_problems(c: Any) -> list[str]:
    """Why a streamed Completion is not intact: [DONE], no error, the exact text, one chunk per token in order."""
    bad = []
    if not c.ok:
        bad.append(f"status={c.status} done={c.done} error={c.error} exception={c.exception}")
    if c.text != generate_text(c.prompt, c.seed, c.max_tokens):
        bad.append(f"text {c.text!r} is not the worker's output")
    if c.chunks != [generate_token(c.prompt, c.seed, i) for i in range(c.max_tokens)]:
        bad.append(f"{len(c.chunks)} chunks are not the {c.max_tokens} tokens in order")
    if any(b < a for a, b in zip(c.token_times, c.token_times[1:])):
        bad.append("token arrival times go backwards")
    return bad


def spread(c: Any) -> float:
    """Seconds from the first token to the last."""
    return c.token_times[-1] - c.token_times[0] if len(c.token_times) > 1 else 0.0


READ_AHEAD = 16 * 1024


class SlowSubscriber:
    """An event subscriber (the run's CURVE client keys) connected through a proxy capping its downstream."""

    def __init__(self, world: Any, rate_kb_s: float):
        self.w, self.rate = world, rate_kb_s
        self.front = Front(world, "events", container_events_url(world.cluster))
        self.front.proxy.read_ahead = READ_AHEAD          # the backlog stays in the orchestrator's socket
        self.sub = EventSubscriber(self.front.url, name="slow-subscriber", curve=world.cluster.client_keys()).start()
        world.on_close(self.sub.stop)
        assert self.sub.connected, f"the slow subscriber did not connect through {self.front.url}"
        self.mark = self.sub.mark()
        self.direct_mark = world.events.mark()
        self.bytes_at = self.front.carried().get("downstream", 0)
        self.toxic_at = self.front.add("bandwidth", "downstream", rate=rate_kb_s)

    def burst(self, events: int, within_s: float, batch: int = 64) -> dict:
        """Completions of 1 token, `batch` at a time, until the direct subscriber saw `events` events since the
        cap (bounded: within_s scaled); the figures, AssertionError when it did not get there or a job failed."""
        limit = within_s * self.w.multiplier
        start, jobs, failed = time.monotonic(), 0, []
        while len(self.w.events.events) - self.direct_mark < events:
            if time.monotonic() - start > limit:
                raise AssertionError(f"the direct subscriber saw {len(self.w.events.events) - self.direct_mark} of "
                                     f"{events} events within {limit:.0f}s ({jobs} completions)")
            res = self.w.client.run_many([dict(prompt=f"nq-burst-{jobs + i}", tenant=("tenant-a", "tenant-b")[i % 2],
                                               max_tokens=1, seed=i) for i in range(batch)], max_workers=16)
            jobs += batch
            failed += [x.value() for x in res if not x.ok]
        assert not failed, f"{len(failed)} of {jobs} burst completions failed: {failed[:3]}"
        return {"jobs": jobs, "events": len(self.w.events.events) - self.direct_mark,
                "seconds": round(time.monotonic() - start, 2)}

    def lift(self) -> int:
        """Remove the cap; the last seq the direct subscriber had seen then (the slow one must get past it)."""
        server().call(lambda: self.front.proxy.reset_toxics())
        return max(e["seq"] for e in self.w.events.events[self.direct_mark:])

    def caught_up(self, last_seq: int, within_s: float) -> dict:
        """Until the slow subscriber received an event past seq `last_seq`, keep publishing (2 completions at a
        time: a gap shows only at the next event it receives, and events published while its queue still
        drains are missed too, as CI saw); its gaps up to there and what the direct subscriber saw of the same
        seqs. AssertionError naming how far it got."""
        def past() -> bool:
            evs = self.sub.events
            return bool(evs) and evs[-1]["seq"] > last_seq
        deadline = time.monotonic() + within_s * self.w.multiplier
        rounds = 0
        while not past():
            if time.monotonic() > deadline:
                evs = self.sub.events
                raise AssertionError(f"the slow subscriber received no event past seq {last_seq} within "
                                     f"{within_s * self.w.multiplier:.0f}s ({rounds} rounds of completions after the "
                                     f"lift); it is at seq {evs[-1]['seq'] if evs else None}")
            res = self.w.client.run_many([dict(prompt=f"nq-after-{rounds}-{i}", tenant="tenant-a", max_tokens=1, seed=i)
                                          for i in range(2)], max_workers=2)
            assert all(x.ok for x in res), f"completions after the lift failed: {[x.value() for x in res if not x.ok][:3]}"
            rounds += 1
            try:   # the drained backlog, then these events, arrive within a fraction of a second once uncapped
                self.sub.wait_for("", predicate=lambda e: e["seq"] > last_seq, timeout_s=0.5, since=self.mark)
            except EventTimeout:
                pass
        evs = self.sub.events[self.mark:]
        cut = next(i for i, e in enumerate(evs) if e["seq"] > last_seq)
        window = evs[:cut + 1]                          # its events up to the first one past last_seq
        got = {e["seq"] for e in window if e["seq"] <= last_seq}
        lo = min(got, default=last_seq)
        missed = {q for g in find_gaps(window) for q in range(g["after"] + 1, g["next"]) if q <= last_seq}
        direct = [e for e in self.w.events.events[self.direct_mark:] if lo <= e["seq"] <= last_seq]
        return {"slow_received": len(got), "slow_gaps": len(find_gaps(window)), "slow_missed": len(missed),
                "direct_received": len(direct), "direct_gaps": find_gaps(direct)[:5],
                "missed_not_published": sorted(missed - {e["seq"] for e in direct})[:10],
                "direct_not_in_slow_or_gaps": len({e["seq"] for e in direct} - got - missed)}

    def lag(self) -> dict:
        """Events the harness's direct subscriber saw since the cap and how many the slow one has, and the
        bytes the proxy passed since the cap's KB/s."""
        direct = self.w.events.matching(since=self.direct_mark)
        slow = self.sub.matching(since=self.mark)
        took = time.time() - self.toxic_at
        return {"direct": len(direct), "slow": len(slow), "since_cap_s": round(took, 3),
                "bytes": self.front.carried().get("downstream", 0) - self.bytes_at}


def container_events_url(cluster: Any) -> str:
    """The event PUB at the orchestrator's own address on its host-facing network (the harness, root on the
    Docker host, reaches it), not its published port: docker-proxy, the published port's userland relay,
    holds megabytes of a slow reader's backlog in its two sockets, so no short burst could fill the PUB's
    queue through it. The published URL when there is no container address (local processes)."""
    nets = (cluster.inspect("orchestrator") or {}).get("networks") or {}
    for short in cluster.topology.host_facing:
        ip = (nets.get(cluster.network_name(short)) or {}).get("ip")
        if ip:
            return f"tcp://{ip}:{ORCHESTRATOR_PORTS['events']}"
    return cluster.events_url


def check_gaps_counted(world: Any, f: dict) -> dict:
    """The slow subscriber missed events, and its seq gaps account for every event it did not receive."""
    record(world, "slow_subscriber_gaps", f)
    assert f["slow_missed"] >= 1, f"the slow subscriber missed nothing (the PUB held its whole backlog): {f}"
    assert f["direct_not_in_slow_or_gaps"] == 0, f"events neither received nor counted in a gap: {f}"
    return f


def check_direct_whole(f: dict) -> None:
    """What the slow subscriber missed, the direct one received: it has no gap of its own."""
    assert not f["direct_gaps"] and not f["missed_not_published"], f"the direct subscriber lost events too: {f}"


def completion_latencies(world: Any, jobs: int, tokens: int) -> list[float]:
    """Client latencies (s) of `jobs` concurrent completions; AssertionError when any failed."""
    res = world.client.run_many([dict(prompt=f"nq-sub-{i}", tenant="tenant-b", max_tokens=tokens, seed=i)
                                 for i in range(jobs)], max_workers=jobs)
    bad = [x.value() for x in res if not x.ok]
    assert not bad, f"completions failed: {bad[:3]}"
    return [x.latency for x in res]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def record(world: Any, name: str, figures: dict) -> dict:
    """Append the scenario's figures to <report_dir>/chaos-metrics.jsonl (apiary_suite.load.write_metrics)."""
    from apiary_suite.load import write_metrics
    from apiary_suite.world import setting
    write_metrics(setting(world.settings, "report_dir", None), f"netquality.{name}", figures)
    return figures


def capped_figures(r: dict) -> dict:
    """Spreads, latencies and the capped link's KB/s of a stream_side_by_side() result."""
    d, c = r["direct"], r["capped"]
    return {"direct_spread_s": round(spread(d), 3), "capped_spread_s": round(spread(c), 3),
            "direct_latency_s": round(d.latency or 0, 3), "capped_latency_s": round(c.latency or 0, 3),
            "bytes": r["bytes"], "capped_kb_s": round(r["bytes"] / 1000 / max(c.latency or 0, 1e-3), 3),
            "cap_kb_s": r["rate_kb_s"], "deadline_s": r["deadline_s"]}
