"""Link-quality fault kinds: Toxiproxy's toxics on one TCP link of the stack ("a|b": the connection the
lower-role side, src, makes to the other's listening port), through harness/nemesis/steering.py
(docs/netquality.md). upstream = src -> dst, downstream = dst -> src, both = one toxic each way.

Kinds: latency (+ jitter, ms), bandwidth (KB/s), slicer, slow_close, limit_data, reset_peer and
blackhole (Toxiproxy's timeout), each with a toxicity. apply() steers the link unless it already is
(a scenario may steer it first, so the move happens before it measures), then puts the toxics on the
live connection; heal() removes them, and unsteers the link if this fault steered it.

verify(): src's own connection runs through the proxy, and a probe shows the toxic. latency: a ZMTP
greeting exchanged with dst's listener across the steered link, timed (dst's first 10 bytes take the
downstream delay, its answer to ours a round trip), against the same probe made directly before the
steering. bandwidth: a transfer through the twin proxy (same toxics, same namespaces, a sink in dst's
namespace for upstream), timed. reset_peer, limit_data and blackhole: a probe through the twin proxy
(quality_probes.py) gets ECONNRESET, exactly `bytes` then the end, or no bytes; slicer: 4 KiB take at least
half their pieces' delays and arrive in many reads; slow_close: the end of a probe stream arrives `delay` late.
"""
from __future__ import annotations

import abc

from typing import Any

from harness.errors import NemesisError
from harness.nemesis.protocol import ActiveFault, FaultKind, check_number, is_docker, peers, poll, rank, register, services_of
from harness.nemesis.quality_probes import probe_limit, probe_reset, probe_silent, probe_slow_close, probe_sliced
from harness.nemesis.steering import Steering, link_ends, steer, steered


class Degraded(ActiveFault):
    """Toxics on a steered link; heal removes them (and the steering, when this fault made it)."""

    def __init__(self, kind, target, params, stack, steering: Steering, owned: bool, toxics: list[dict]):
        super().__init__(kind, target, params, stack)
        self.steering, self.owned, self.toxics = steering, owned, toxics

    def check(self) -> tuple[bool, Any]:
        s = self.steering
        ok, links = poll(lambda: (bool(s.service_links()), s.service_links()), self.params["verify_timeout_s"])
        on = sorted(s.proxy.toxics)
        evidence: dict = {"proxy": s.name, "service_links": links, "toxics_on_proxy": on}
        if not ok:
            return False, {**evidence, "why": f"{s.src} does not connect through the proxy"}
        if not {t["name"] for t in self.toxics} <= set(on):
            return False, {**evidence, "why": "toxics missing on the proxy"}
        held, probe = self.probe()
        return held, {**evidence, "probe": probe}

    def probe(self) -> tuple[bool, dict]:
        """Kind-specific proof the toxic acts (the steering and the toxics were checked already)."""
        return True, {}

    def expected(self, stream: str) -> bool:
        return self.params["stream"] in (stream, "both")

    def undo(self) -> list[str]:
        left = self.steering.remove_toxics([t["name"] for t in self.toxics])
        if self.owned and not left:
            left += self.steering.unsteer()
        return left


class LatencyFault(Degraded):
    def probe(self) -> tuple[bool, dict]:
        base = self.steering.baseline
        now = self.steering.greeting(2 + 3 * self.params["latency"] / 1000)
        if now is None or base is None:
            return False, {"baseline": base, "now": now, "why": "greeting probe failed"}
        lat, (early, late) = self.params["latency"], tolerance_ms(self.params)
        want_first = lat if self.expected("downstream") else 0
        want_reply = want_first + (lat if self.expected("upstream") else 0)
        added_first, added_reply = now["first_ms"] - base["first_ms"], now["reply_ms"] - base["reply_ms"]
        # the reply crosses the toxic both ways when both streams carry it: each crossing may come a jitter early
        # (the least delayed of 5 probes shows it: the 30-minute soak saw 25 ms for 2 x 20 ms +- 10)
        early_reply = early + (self.params.get("jitter", 0) if want_first and want_reply > want_first else 0)
        ok = self.params["toxicity"] < 1 or (now["first_ms"] >= want_first - early and now["reply_ms"] >= want_reply - early_reply
                                             and added_first <= want_first + late + CONNECT_SLACK_MS
                                             and added_reply <= want_reply + late)
        return ok, {"baseline": base, "now": now, "added_first_ms": round(added_first, 3),
                    "added_reply_ms": round(added_reply, 3), "want_first_ms": want_first, "want_reply_ms": want_reply,
                    "tolerance_ms": {"early": early, "early_reply": early_reply, "late": late, "first_connect": CONNECT_SLACK_MS}}


CONNECT_SLACK_MS = 100     # the first bytes also wait for the proxy's connect upstream and dst's accept (a loaded
                           # machine's scheduler): their upper bound only tells the streams apart; the answer
                           # to our signature (an established connection's round trip) bounds the latency


class BandwidthFault(Degraded):
    def probe(self) -> tuple[bool, dict]:
        rate = self.params["rate"]
        if self.params["toxicity"] < 1:
            return True, {"skipped": "toxicity < 1: a probe link may draw no toxic"}
        out, ok = {}, True
        size = max(2000, int(rate * 1000 * self.params["probe_s"]))
        for stream in ("upstream", "downstream"):
            if self.expected(stream):
                got = self.steering.rate(stream, size, 5 + 2 * size / (rate * 1000))
                out[stream] = {"kb_s": None if got is None else round(got, 1), "bytes": size}
                ok = ok and got is not None and abs(got - rate) <= rate * self.params["rate_tolerance"]
        return ok, {"want_kb_s": rate, "observed": out, "via": self.steering.twin.listen}


class TwinProbed(Degraded):
    """A fault proved by a probe connection through the steering's twin proxy (harness/nemesis/quality_probes.py)."""

    def probe(self) -> tuple[bool, dict]:
        if self.params["toxicity"] < 1:
            return True, {"skipped": "toxicity < 1: a probe link may draw no toxic"}
        s = self.steering
        held, evidence = self.twin_probe(s.sockets.make, s.bind_ip, s.twin.listen)
        return held, {**evidence, "via": s.twin.listen}

    @abc.abstractmethod
    def twin_probe(self, sock_of, src_ip: str, addr: str) -> tuple[bool, dict]:
        """Probe through the twin proxy at addr from src_ip; return (held, evidence)."""


class ResetFault(TwinProbed):
    def twin_probe(self, sock_of, src_ip, addr):
        return probe_reset(sock_of, src_ip, addr, self.params["timeout"] / 1000 + 2)


class LimitFault(TwinProbed):
    def twin_probe(self, sock_of, src_ip, addr):
        out, ok = {}, True
        for stream in ("downstream", "upstream"):
            if self.expected(stream):
                held, out[stream] = probe_limit(sock_of, src_ip, addr, stream, int(self.params["bytes"]), 5)
                ok = ok and held
        return ok, out


class BlackholeFault(TwinProbed):
    def twin_probe(self, sock_of, src_ip, addr):
        window = 0.5 if not self.params["timeout"] else min(0.5, self.params["timeout"] / 1000 / 2)
        return probe_silent(sock_of, src_ip, addr, window)


class SlicerFault(TwinProbed):
    SIZE = 4096

    def twin_probe(self, sock_of, src_ip, addr):
        p, out, ok = self.params, {}, True
        for stream in ("downstream", "upstream"):
            if self.expected(stream):
                held, out[stream] = probe_sliced(sock_of, src_ip, addr, stream, self.SIZE, int(p["average_size"]),
                                                 int(p["delay"]), 10)
                ok = ok and held
        return ok, out


class SlowCloseFault(TwinProbed):
    def twin_probe(self, sock_of, src_ip, addr):
        out, ok = {}, True
        for stream in ("downstream", "upstream"):
            if self.expected(stream):
                held, out[stream] = probe_slow_close(sock_of, src_ip, addr, stream, self.params["delay"],
                                                     self.params["delay"] / 1000 + 5)
                ok = ok and held
        return ok, out


def tolerance_ms(params: dict) -> tuple[float, float]:
    """(early, late): the observed delay may be at most `early` below the requested one (a toxic never
    delivers early: 2 ms of clock and probe slack, plus the jitter), and the added delay (observed minus
    the direct baseline) at most `late` above it (the harness's threads and a loaded machine's scheduler:
    10 ms + 25 %, plus the jitter: 2.24 s for 2 s was seen at load 20+; a doubled toxic still fails;
    bench/toxiproxy.py measures the toxic itself)."""
    jitter = params.get("jitter", 0)
    return round(2 + jitter, 3), round(10 + 0.25 * params["latency"] + jitter, 3)


class QualityKind(FaultKind):
    """Base of the link-quality kinds: `toxic_type`, its `attributes` (params) and the active class."""

    toxic_type = ""
    attributes: tuple[str, ...] = ()
    active: type[Degraded] = Degraded
    common = {"stream": "both", "toxicity": 1.0, "verify_timeout_s": 5.0}

    def validate(self, params: dict) -> None:
        if params["stream"] not in ("upstream", "downstream", "both"):
            raise_bad(self.name, "stream", params["stream"], "upstream, downstream or both")
        check_number(self.name, params, "toxicity", 0, 1)
        check_number(self.name, params, "verify_timeout_s", 0, 30)
        for a in self.attributes:
            check_number(self.name, params, a, 0, 10_000_000)

    def targets(self, stack: Any) -> list[str]:
        if not is_docker(stack):
            return []
        return [f"{x}|{y}" for x in services_of(stack) for y in peers(stack, x)
                if rank(x, stack) == rank(y, stack) + 1]

    def claims(self, stack: Any, target: str, params: dict) -> list[tuple[str, str]]:
        src, dst = link_ends(stack, target)
        return [(src, "quality"), (dst, "quality")]

    def toxics(self, p: dict) -> list[dict]:
        streams = ("upstream", "downstream") if p["stream"] == "both" else (p["stream"],)
        return [{"name": f"{self.name}_{s}", "type": self.toxic_type, "stream": s, "toxicity": p["toxicity"],
                 "attributes": {a: p[a] for a in self.attributes}} for s in streams]

    def apply(self, stack: Any, target: str, **params: Any) -> Degraded:
        p = self.check_params(params)
        self.check_target(stack, target)
        owned = steered(stack, target) is None
        steering = steer(stack, target, p["verify_timeout_s"])
        toxics = self.toxics(p)
        try:
            toxics_at = steering.add_toxics(toxics)
        except Exception:
            steering.remove_toxics([t["name"] for t in toxics])
            if owned:
                steering.unsteer()
            raise
        fault = self.active(self.name, target, p, stack, steering, owned, toxics)
        fault.applied = {**steering.evidence, "toxics": toxics, "toxics_at": toxics_at, "steered_by_fault": owned}
        return fault


def raise_bad(kind: str, name: str, value: Any, want: str) -> None:
    raise NemesisError(f"{kind}: bad param {name!r} {value!r}; want {want}")


@register
class LatencyKind(QualityKind):
    """Delay every chunk on the link by `latency` ms (± `jitter`)."""

    name = "latency"
    toxic_type = "latency"
    attributes = ("latency", "jitter")
    active = LatencyFault
    defaults = {"latency": 100, "jitter": 0, **QualityKind.common}


@register
class BandwidthKind(QualityKind):
    """Cap the link at `rate` KB/s."""

    name = "bandwidth"
    toxic_type = "bandwidth"
    attributes = ("rate",)
    active = BandwidthFault
    defaults = {"rate": 100, "probe_s": 0.3, "rate_tolerance": 0.15, **QualityKind.common}

    def validate(self, params: dict) -> None:
        super().validate(params)
        check_number(self.name, params, "rate", 1, 10_000_000)
        check_number(self.name, params, "probe_s", 0.05, 5)
        check_number(self.name, params, "rate_tolerance", 0.01, 1)


def simple_kind(kind_name: str, toxic: str, attrs: dict, doc: str, stream: str = "both",
                active: type[Degraded] = Degraded) -> type[QualityKind]:
    """A quality kind whose verify() is `active`'s probe (Degraded: its steering and toxics on the proxy only)."""
    cls = type(f"{kind_name.title().replace('_', '')}Kind", (QualityKind,), {
        "__doc__": doc, "name": kind_name, "toxic_type": toxic, "attributes": tuple(attrs), "active": active,
        "defaults": {**attrs, **QualityKind.common, "stream": stream}})
    return register(cls)


simple_kind("slicer", "slicer", {"average_size": 64, "size_variation": 32, "delay": 1000},
            "Cut every write on the link into pieces of about average_size bytes, delay µs apart.", "both", SlicerFault)
simple_kind("slow_close", "slow_close", {"delay": 1000}, "Pass the link's close on `delay` ms late.", "both",
            SlowCloseFault)
simple_kind("limit_data", "limit_data", {"bytes": 65536}, "Close the link after `bytes` bytes.", "downstream",
            LimitFault)
simple_kind("reset_peer", "reset_peer", {"timeout": 0}, "Reset the link (RST) `timeout` ms after data flows.",
            "upstream", ResetFault)
simple_kind("blackhole", "timeout", {"timeout": 0},
            "Drop everything on the link; close it after `timeout` ms (0: only when healed).", "both", BlackholeFault)
