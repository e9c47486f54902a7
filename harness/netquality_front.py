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

from harness.client import ApiClient
from harness.events import EventSubscriber
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
        self.front = Front(world, "events", world.cluster.events_url)
        self.front.proxy.read_ahead = READ_AHEAD          # the backlog stays in the orchestrator's socket
        self.sub = EventSubscriber(self.front.url, name="slow-subscriber", curve=world.cluster.client_keys()).start()
        world.on_close(self.sub.stop)
        assert self.sub.connected, f"the slow subscriber did not connect through {self.front.url}"
        self.mark = self.sub.mark()
        self.direct_mark = world.events.mark()
        self.bytes_at = self.front.carried().get("downstream", 0)
        self.toxic_at = self.front.add("bandwidth", "downstream", rate=rate_kb_s)

    def lag(self) -> dict:
        """Events the harness's direct subscriber saw since the cap and how many the slow one has, and the
        bytes the proxy passed since the cap's KB/s."""
        direct = self.w.events.matching(since=self.direct_mark)
        slow = self.sub.matching(since=self.mark)
        took = time.time() - self.toxic_at
        return {"direct": len(direct), "slow": len(slow), "since_cap_s": round(took, 3),
                "bytes": self.front.carried().get("downstream", 0) - self.bytes_at}


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
    """Append the scenario's figures to <report_dir>/chaos-metrics.jsonl (harness.load.write_metrics)."""
    from harness.load import write_metrics
    from harness.world import setting
    write_metrics(setting(world.settings, "report_dir", None), f"netquality.{name}", figures)
    return figures


def capped_figures(r: dict) -> dict:
    """Spreads, latencies and the capped link's KB/s of a stream_side_by_side() result."""
    d, c = r["direct"], r["capped"]
    return {"direct_spread_s": round(spread(d), 3), "capped_spread_s": round(spread(c), 3),
            "direct_latency_s": round(d.latency or 0, 3), "capped_latency_s": round(c.latency or 0, 3),
            "bytes": r["bytes"], "capped_kb_s": round(r["bytes"] / 1000 / max(c.latency or 0, 1e-3), 3),
            "cap_kb_s": r["rate_kb_s"], "deadline_s": r["deadline_s"]}
